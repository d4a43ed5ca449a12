"""The run directory: the one place that knows where a run's files are.

Every tool (``train.py``, ``evaluate.py``, the figure script, the
benchmarks) finds runs, checkpoints, results and pretrained models through
this module. Layout of a run directory::

    RUN/config.json              the experiment (refused if a rerun disagrees)
    RUN/environment.json         versions, data source and checksum, command lines
    RUN/checkpoints/ckpt-<E>.*   tf.train.CheckpointManager (model, optimizer,
                                 epoch, generator state), written after every
                                 epoch E, the last 3 kept
    RUN/checkpoints/milestones/  copies kept for good of the checkpoints at the
                                 end of each schedule stage and every 500 epochs
                                 of the last (``TrainConfig.milestones``)
    RUN/checkpoints/damaged/     checkpoints found unreadable on resuming, moved
                                 aside for inspection
    RUN/tensorboard/             train/ and validation/ event files
    RUN/lock                     held (flock) by the train.py that trains the
                                 run, holding its process id; the operating
                                 system releases it when that process ends

Names: ``run_name(config)`` is ``<objective>[_<estimator>]_k<k>_<latents>_<schedule>``
(e.g. ``iwae_k5_50_poster``); ``train.py`` puts a run in ``runs/<name>``.
Results of ``evaluate.py`` are kept outside the (git-ignored) runs, in the
repository: ``results/<name>/eval-ckpt<E>-K<K>[-n<N>].json`` with, beside
it, ``.npz`` holding the per-image log-likelihood estimates. A pretrained
model, ``iwae_tf/pretrained/<name>/`` (``iwae_tf.pretrained``), is a run
directory whose one checkpoint holds the model's weights only.

What a checkpoint holds, and every operation on one (saving milestones,
checking, restoring, exporting), is ``checkpoints.py``; this module only
says where the files are.
"""

import contextlib
import fcntl
import json
import os
import platform
import shutil
import sys

import keras
import numpy as np
import tensorflow as tf

from iwae_tf import config as config_lib
from iwae_tf import datasets as data_lib
from iwae_tf import errors

RUNS_ROOT = 'runs'


RESULTS_ROOT = 'results'


PRETRAINED_ROOT = os.path.join('iwae_tf', 'pretrained')  # package data: installed with it


def run_name(config):
  """The conventional name of a run: ``iwae_k5_50_poster``,
  ``iwae_dreg_k50_100-50_paper``, ``omniglot_vae_k1_50_paper``,
  ``iwae_k50_50_continue_from_vae_k1_50_poster``, ``..._fixed`` (fixed
  binarisation), ``..._original`` (the original code's procedure),
  ``..._seed1`` (a seed other than 0)."""
  obj, data = config.objective, config.data
  est = '' if obj.estimator == 'iwae' else f'_{obj.estimator}'
  latents = '-'.join(map(str, config.model.latents))
  name = f'{obj.name}{est}_k{obj.k}_{latents}_{config.optim.schedule}'
  if data.dataset != 'mnist':
    name = f'{data.dataset}_{name}'
  if data.binarization != 'dynamic':
    name += f'_{data.binarization}'
  if config.procedure != 'paper':
    name += f'_{config.procedure}'
  if config.seed:
    name += f'_seed{config.seed}'
  if config.init_from:
    name += '_from_' + os.path.basename(os.path.normpath(config.init_from))
  return name


def default_run_dir(config):
  return os.path.join(RUNS_ROOT, run_name(config))


def pretrained_dir(run_dir, pretrained_root=PRETRAINED_ROOT):
  """Where a run's exported weights go: ``iwae_tf/pretrained/<run dir's name>``."""
  return os.path.join(pretrained_root, os.path.basename(os.path.normpath(run_dir)))


def results_dir(run_dir, results_root=RESULTS_ROOT):
  """Where ``evaluate.py`` keeps a run's results: ``results/<run dir's name>``."""
  return os.path.join(results_root, os.path.basename(os.path.normpath(run_dir)))


def result_path(run_dir, epoch, k_nll, limit_test=None, results_root=RESULTS_ROOT):
  suffix = '' if limit_test is None else f'-n{limit_test}'
  return os.path.join(results_dir(run_dir, results_root), f'eval-ckpt{epoch}-K{k_nll}{suffix}.json')


def per_image_path(result_json):
  """The ``.npz`` of per-image values beside a result file."""
  return os.path.splitext(result_json)[0] + '.npz'


class RunDirError(errors.IWAEError):
  """A run directory that cannot be used for this configuration."""


def write_json_atomic(path, obj):
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(obj, f, indent=2, sort_keys=True)
    f.write('\n')
  os.replace(tmp, path)


def lock_path(run_dir):
  return os.path.join(run_dir, 'lock')


def hold_lock(path):
  """Opens ``path`` and holds an exclusive ``flock`` on it, writing this
  process's id there; the operating system drops the lock when the process
  ends, however it ends.

  Returns:
    The open file: the lock lasts until it is closed.

  Raises:
    BlockingIOError: another process holds it; ``holder`` is its process id
      as written in the file.
  """
  f = open(path, 'a+')
  try:
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError as e:
    f.seek(0)
    e.holder = f.read().strip() or 'unknown'
    f.close()
    raise
  f.seek(0)
  f.truncate()
  f.write(f'{os.getpid()}\n')
  f.flush()
  return f


@contextlib.contextmanager
def locked(run_dir):
  """Holds the run directory's lock (``RUN/lock``, ``hold_lock``) while the
  block runs, so a killed run never blocks its own resume. The directory is
  made if it does not exist.

  Raises:
    RunDirError: another process holds the lock (its process id is named).
  """
  os.makedirs(run_dir, exist_ok=True)
  try:
    f = hold_lock(lock_path(run_dir))
  except BlockingIOError as e:
    raise RunDirError(f'{run_dir}: in use by another process (process id {e.holder}); '
                      'wait for it to end, or stop it, then rerun') from None
  with f:
    try:
      yield
    finally:
      f.truncate(0)
      fcntl.flock(f, fcntl.LOCK_UN)


def lock_holder(run_dir):
  """The process id holding ``run_dir``'s lock (as written there), or None."""
  try:
    f = open(lock_path(run_dir))
  except OSError:
    return None
  with f:
    try:
      fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
      return f.read().strip() or 'unknown'
    fcntl.flock(f, fcntl.LOCK_UN)
    return None


def config_path(run_dir):
  return os.path.join(run_dir, 'config.json')


def environment_path(run_dir):
  return os.path.join(run_dir, 'environment.json')


def read_config(run_dir):
  """The ``TrainConfig`` saved in a run directory."""
  path = config_path(run_dir)
  if not os.path.exists(path):
    raise RunDirError(f'{run_dir}: not a run directory (no config.json)')
  try:
    with open(path) as f:
      return config_lib.TrainConfig.from_dict(json.load(f))
  except (ValueError, KeyError, TypeError) as e:
    raise RunDirError(f'{path}: unreadable run configuration ({e})') from None


def identity_differences(old, new):
  """What makes two ``TrainConfig``s different experiments, as
  ``'key: old -> new; ...'``, or '' when they are the same experiment."""
  old, new = old.identity(), new.identity()
  return '; '.join(f'{k}: {old.get(k)} -> {new.get(k)}'
                   for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k))


def prepare_run_dir(config, splits):
  """Creates or checks the run directory; records config and environment.

  Raises:
    RunDirError: the directory holds a run of a different experiment.
  """
  run_dir = config.run_dir
  if os.path.exists(run_dir) and not os.path.isdir(run_dir):
    raise RunDirError(f'{run_dir}: exists and is not a directory')
  os.makedirs(run_dir, exist_ok=True)
  cfg_path = config_path(run_dir)
  if os.path.exists(cfg_path):
    diffs = identity_differences(read_config(run_dir), config)
    if diffs:
      raise RunDirError(f'{run_dir}: holds a different experiment ({diffs}); '
                        'use another --run_dir')
  write_json_atomic(cfg_path, config.to_dict())
  record_environment(
      run_dir, invocation=' '.join(sys.argv),
      python=sys.version, platform=platform.platform(),
      tensorflow=tf.__version__, keras=keras.__version__,
      tensorflow_probability=__import__('tensorflow_probability').__version__,
      numpy=np.__version__, data_source=data_lib.mnist.portable_source(splits.source),
      data_sha256=splits.sha256)


def copy_if_absent(source, target):
  """Copies the file ``source`` to ``target`` unless ``target`` exists,
  through a temporary name, so that ``target`` is never seen half-written.
  Returns whether it copied."""
  if os.path.exists(target):
    return False
  os.makedirs(os.path.dirname(target) or '.', exist_ok=True)
  shutil.copyfile(source, target + '.tmp')
  os.replace(target + '.tmp', target)
  return True


def record_environment(run_dir, invocation=None, **entries):
  """Adds ``entries`` (and ``invocation`` to the list of command lines) to
  ``environment.json``."""
  path = environment_path(run_dir)
  env = {}
  if os.path.exists(path):
    with open(path) as f:
      env = json.load(f)
  env.update(entries)
  if invocation is not None:
    env.setdefault('invocations', []).append(invocation)
  write_json_atomic(path, env)


def read_environment(run_dir):
  """``environment.json`` of a run as a dict (empty if it has none)."""
  path = environment_path(run_dir)
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


def checkpoint_dir(run_dir):
  return os.path.join(run_dir, 'checkpoints')


def milestone_dir(run_dir):
  return os.path.join(checkpoint_dir(run_dir), 'milestones')


def checkpoint_path(run_dir, epoch):
  """The checkpoint of ``epoch``: the rolling one if kept, else the milestone."""
  rolling = os.path.join(checkpoint_dir(run_dir), f'ckpt-{epoch}')
  milestone = os.path.join(milestone_dir(run_dir), f'ckpt-{epoch}')
  return milestone if (not tf.io.gfile.exists(rolling + '.index')
                       and tf.io.gfile.exists(milestone + '.index')) else rolling


def checkpoint_files(prefix):
  return tf.io.gfile.glob(prefix + '.index') + tf.io.gfile.glob(prefix + '.data-*')


def check_writable(run_dir):
  """Raises ``RunDirError`` now, not after an epoch, if the run's checkpoint
  directory cannot be written."""
  target = checkpoint_dir(run_dir)
  try:
    os.makedirs(target, exist_ok=True)
    probe = os.path.join(target, f'.write-test-{os.getpid()}')
    with open(probe, 'w') as f:
      f.write('ok')
    os.remove(probe)
  except OSError as e:
    raise RunDirError(f'{target}: cannot be written ({e.strerror}); nothing was trained') from None


def epoch_of(prefix):
  return int(prefix.rsplit('-', 1)[1])


def saved_checkpoints(run_dir):
  """Every checkpoint prefix of a run, rolling and milestones, newest epoch
  first (at equal epochs the rolling one first). Found from the files, not
  from the manager's state file, which may itself be damaged."""
  found = []
  for kind, directory in enumerate((checkpoint_dir(run_dir), milestone_dir(run_dir))):
    found += [(-epoch_of(prefix), kind, prefix) for prefix in checkpoints_in(directory)]
  return [prefix for _, _, prefix in sorted(found)]


def checkpoints_in(directory):
  """The prefixes of the checkpoints ``ckpt-<E>`` in one directory, by their
  index files, in no particular order."""
  indices = tf.io.gfile.glob(os.path.join(directory, 'ckpt-*.index'))
  return [i[:-len('.index')] for i in indices if i[:-len('.index')].rsplit('-', 1)[1].isdigit()]


def checkpoint_epochs(run_dir):
  """The epochs of a run's checkpoints, rolling and milestones, as a set."""
  return {epoch_of(prefix) for prefix in saved_checkpoints(run_dir)}


def newest_epoch(run_dir):
  """The epoch of a run's newest checkpoint (by its files), or 0."""
  saved = saved_checkpoints(run_dir)
  return epoch_of(saved[0]) if saved else 0

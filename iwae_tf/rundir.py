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
                                 end of each schedule stage (epochs 1, 4, 13, 40,
                                 121, 364, 1093, 3280)
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
model, ``iwae_tf/pretrained/<name>/`` (``iwae_tf.pretrained``), is a run directory whose one checkpoint holds
the model's weights only.

Damaged checkpoints: on resuming, every tensor of the newest checkpoint is
read back (the bundle reader checks each tensor's CRC32C) before it is used;
a damaged one (a data file truncated by a full disk, say) is moved to
``checkpoints/damaged/`` with a warning, and the next newest readable
checkpoint, rolling or milestone, is used instead. TensorFlow writes
checkpoints to temporary names and updates the state file atomically, so a
kill during a save leaves the previous checkpoint loadable.
"""

import contextlib
import dataclasses
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
from iwae_tf import data as data_lib
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


class DamagedCheckpointError(RunDirError):
  """A checkpoint whose files cannot be read back."""


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


def read_config(run_dir):
  """The ``TrainConfig`` saved in a run directory."""
  path = os.path.join(run_dir, 'config.json')
  if not os.path.exists(path):
    raise RunDirError(f'{run_dir}: not a run directory (no config.json)')
  try:
    with open(path) as f:
      return config_lib.TrainConfig.from_dict(json.load(f))
  except (ValueError, KeyError, TypeError) as e:
    raise RunDirError(f'{path}: unreadable run configuration ({e})') from None


def prepare_run_dir(config, splits):
  """Creates or checks the run directory; records config and environment.

  Raises:
    RunDirError: the directory holds a run of a different experiment.
  """
  run_dir = config.run_dir
  if os.path.exists(run_dir) and not os.path.isdir(run_dir):
    raise RunDirError(f'{run_dir}: exists and is not a directory')
  os.makedirs(run_dir, exist_ok=True)
  cfg_path = os.path.join(run_dir, 'config.json')
  if os.path.exists(cfg_path):
    old = read_config(run_dir).identity()
    new = config.identity()
    if old != new:
      diffs = [f'{k}: {old[k]} -> {new[k]}' for k in new if old[k] != new[k]]
      raise RunDirError(f'{run_dir}: holds a different experiment ({"; ".join(diffs)}); '
                        'use another --run_dir')
  write_json_atomic(cfg_path, config.to_dict())
  record_environment(
      run_dir, invocation=' '.join(sys.argv),
      python=sys.version, platform=platform.platform(),
      tensorflow=tf.__version__, keras=keras.__version__,
      tensorflow_probability=__import__('tensorflow_probability').__version__,
      numpy=np.__version__, data_source=data_lib.portable_source(splits.source),
      data_sha256=splits.sha256)


def record_environment(run_dir, invocation=None, **entries):
  """Adds ``entries`` (and ``invocation`` to the list of command lines) to
  ``environment.json``."""
  path = os.path.join(run_dir, 'environment.json')
  env = {}
  if os.path.exists(path):
    with open(path) as f:
      env = json.load(f)
  env.update(entries)
  if invocation is not None:
    env.setdefault('invocations', []).append(invocation)
  write_json_atomic(path, env)


def initialise_from(model, config):
  """Sets ``model``'s weights to those of the newest checkpoint of the run
  ``config.init_from`` (read only: nothing there is written).

  The source must have the same architecture and data set; its optimizer
  state, epoch and generator position are not taken (a new run starts).

  Returns:
    ``{'run_dir', 'checkpoint', 'epoch', 'objective'}`` of the source.

  Raises:
    RunDirError: the source is missing, has no readable checkpoint, or
      another architecture or data set.
  """
  source_dir = config.init_from
  source = read_config(source_dir)
  if source.model != config.model:
    raise RunDirError(f'--init_from={source_dir}: its architecture ({source.model}) differs '
                      f'from this run\'s ({config.model})')
  if source.data.dataset != config.data.dataset:
    raise RunDirError(f'--init_from={source_dir}: trained on {source.data.dataset}, not '
                      f'{config.data.dataset}')
  saved = saved_checkpoints(source_dir)
  if not saved:
    raise RunDirError(f'--init_from={source_dir}: no checkpoint')
  verify_checkpoint(saved[0])
  # The model's weights only: not the source's generator position or epoch.
  weights = tf.train.Checkpoint(model=_variable_tree(model.weights,
                                                     [v.path for v in model.weights]))
  weights.restore(saved[0]).expect_partial().assert_existing_objects_matched()
  epoch = tf.train.load_checkpoint(saved[0]).get_tensor('epoch/.ATTRIBUTES/VARIABLE_VALUE')
  return {'run_dir': source_dir, 'checkpoint': saved[0], 'epoch': int(epoch),
          'objective': dataclasses.asdict(source.objective)}


def _variable_tree(variables, names):
  """A checkpointable node holding ``variables`` under ``names``."""
  node = tf.train.Checkpoint()
  for name, v in zip(names, variables):
    setattr(node, name.replace('/', '__'), v)
  return node


def make_checkpoint(model, optimizer=None, rng=None):
  """The checkpoint object shared by training and evaluation.

  Keras 3 keeps sub-layers and optimizer slots in its own tracked lists,
  which ``tf.train.Checkpoint`` does not traverse, so the variables are
  listed explicitly: the model's by their paths (stable, since every layer
  is named), the optimizer's by position (Keras creates them in the order
  of the model's trainable variables).

  Args:
    model: an ``IWAEModel``.
    optimizer: the trainer's optimizer (training) or None (evaluation).
    rng: the trainer's ``tf.random.Generator``, saved as ``rng``, or None.

  Returns:
    ``(checkpoint, epoch)``: ``epoch`` a variable saved with it.
  """
  epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name='epoch')
  kwargs = {'model': _variable_tree(model.weights, [v.path for v in model.weights]),
            'epoch': epoch}
  if rng is not None:
    kwargs['rng'] = rng
  if optimizer is not None:
    kwargs['optimizer'] = _variable_tree(
        optimizer.variables, [f'slot_{i:04d}' for i in range(len(optimizer.variables))])
  return tf.train.Checkpoint(**kwargs), epoch


def checkpoint_manager(checkpoint, run_dir, max_to_keep=3):
  return tf.train.CheckpointManager(checkpoint, checkpoint_dir(run_dir),
                                    max_to_keep=max_to_keep)


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


def keep_milestone(prefix, run_dir):
  """Copies checkpoint ``prefix`` into ``checkpoints/milestones/`` for good.

  Each file goes to a temporary name first, removed if the copy fails (a full
  disk, say): a failed copy leaves no partial file, and the milestone is made
  again on resuming (``restore_milestones``) while its source is kept.
  """
  target = milestone_dir(run_dir)
  os.makedirs(target, exist_ok=True)
  # Data files first, the index last: a milestone is complete once its
  # index exists.
  for f in sorted(checkpoint_files(prefix), key=lambda f: f.endswith('.index')):
    tmp = os.path.join(target, '.tmp-' + os.path.basename(f))
    try:
      shutil.copyfile(f, tmp)
      os.replace(tmp, os.path.join(target, os.path.basename(f)))
    finally:
      if os.path.exists(tmp):
        os.remove(tmp)


def restore_milestones(run_dir, milestones, epoch, warn=None):
  """Makes again the milestones up to ``epoch`` that a failed copy left out,
  from the rolling checkpoint when it is still there; says once, for each
  that cannot be made, that it is missing.

  Returns:
    The milestone epochs that are missing for good.
  """
  warn = warn or (lambda msg: print(msg, file=sys.stderr))
  missing = []
  for m in sorted(e for e in milestones if e <= epoch):
    if tf.io.gfile.exists(os.path.join(milestone_dir(run_dir), f'ckpt-{m}.index')):
      continue
    rolling = os.path.join(checkpoint_dir(run_dir), f'ckpt-{m}')
    if tf.io.gfile.exists(rolling + '.index'):
      keep_milestone(rolling, run_dir)
      continue
    missing.append(m)
  for pattern in ('.tmp-*',):  # a killed copy's leftovers
    for f in tf.io.gfile.glob(os.path.join(milestone_dir(run_dir), pattern)):
      os.remove(f)
  if missing:
    warn(f'warning: {run_dir}: no checkpoint is left of milestone epoch(s) '
         f'{", ".join(map(str, missing))} (a copy failed after its source rolled over); '
         'the learning curve will lack them')
  return missing


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
    for index in tf.io.gfile.glob(os.path.join(directory, 'ckpt-*.index')):
      prefix = index[:-len('.index')]
      if prefix.rsplit('-', 1)[1].isdigit():
        found.append((-epoch_of(prefix), kind, prefix))
  return [prefix for _, _, prefix in sorted(found)]


def verify_checkpoint(prefix):
  """Reads back every tensor of a checkpoint.

  Raises:
    DamagedCheckpointError: the checkpoint cannot be read; the bundle reader
      verifies each tensor's CRC32C, so truncated or altered data files are
      caught here.
  """
  # What TensorFlow raises depends on the damage: OpErrors for missing or
  # unreadable files, IndexError for a truncated data file, RuntimeError
  # for a checksum mismatch.
  try:
    reader = tf.train.load_checkpoint(prefix)
    for name in reader.get_variable_to_shape_map():
      reader.get_tensor(name)
  except (tf.errors.OpError, ValueError, IndexError, RuntimeError) as e:
    first = (str(e).strip().splitlines() or [''])[0][:200]
    raise DamagedCheckpointError(f'{prefix}: {type(e).__name__}: {first}') from None


def _quarantine(prefix, run_dir):
  """Moves a damaged checkpoint's files to ``checkpoints/damaged/``."""
  target = os.path.join(checkpoint_dir(run_dir), 'damaged')
  os.makedirs(target, exist_ok=True)
  tag = 'milestone-' if os.path.dirname(prefix) == milestone_dir(run_dir) else ''
  for f in checkpoint_files(prefix):
    os.replace(f, os.path.join(target, tag + os.path.basename(f)))
  return target


def restore_newest_readable(checkpoint, run_dir, warn=None):
  """Restores the newest checkpoint of ``run_dir`` that can be read.

  Damaged checkpoints newer than it are moved aside, with a warning, and the
  manager's state file is rewritten to list the rolling checkpoints left, so
  that the next save neither overwrites the damaged files nor points at them.

  Returns:
    The restored prefix, or None when the run has no checkpoint yet.

  Raises:
    RunDirError: checkpoints exist but none is readable.
  """
  warn = warn or (lambda msg: print(msg, file=sys.stderr))
  candidates = saved_checkpoints(run_dir)
  for prefix in candidates:
    try:
      verify_checkpoint(prefix)
    except DamagedCheckpointError as e:
      where = _quarantine(prefix, run_dir)
      warn(f'warning: {prefix} is damaged ({str(e)[len(prefix) + 2:]}); '
           f'its files were moved to {where}; trying an older checkpoint')
      continue
    # A readable checkpoint that does not fit the model is not damage: stop,
    # moving nothing.
    try:
      checkpoint.restore(prefix).assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as e:
      first = (str(e).strip().splitlines() or [type(e).__name__])[0]
      raise RunDirError(f'{prefix}: does not fit this model ({first[:200]})') from None
    if candidates[0] != prefix:  # the state file may name moved checkpoints
      rolling = [p for p in saved_checkpoints(run_dir)
                 if os.path.dirname(p) == checkpoint_dir(run_dir)]
      state = os.path.join(checkpoint_dir(run_dir), 'checkpoint')
      if rolling:
        tf.compat.v1.train.update_checkpoint_state(
            checkpoint_dir(run_dir), rolling[0],
            all_model_checkpoint_paths=list(reversed(rolling)))
      elif os.path.exists(state):
        os.remove(state)
    return prefix
  if candidates:
    raise RunDirError(f'{checkpoint_dir(run_dir)}: no readable checkpoint left (the damaged '
                      'ones are in checkpoints/damaged/); use a new --run_dir')
  return None


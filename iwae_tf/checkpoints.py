"""Checkpoints: what they hold, and every operation on them.

``make_checkpoint`` is the one checkpoint object of training and evaluation
(model, optimizer slots, epoch, generator state); where its files live is the
run directory's business (``rundir.py``). Here: saving milestones for good,
reading them back, restoring a run's model for evaluation, exporting its
weights, and starting a run from another's (``--init_from``).

Damaged checkpoints: on resuming, every tensor of the newest checkpoint is
read back (the bundle reader checks each tensor's CRC32C) before it is used;
a damaged one (a data file truncated by a full disk, say) is moved to
``checkpoints/damaged/`` with a warning, and the next newest readable
checkpoint, rolling or milestone, is used instead. TensorFlow writes
checkpoints to temporary names and updates the state file atomically, so a
kill during a save leaves the previous checkpoint loadable.
"""

import dataclasses
import os
import shutil
import sys

import tensorflow as tf

from iwae_tf import model as model_lib
from iwae_tf import results
from iwae_tf import rundir


class CheckpointError(rundir.RunDirError):
  """A checkpoint that is missing, or does not fit the run's model."""


class DamagedCheckpointError(CheckpointError):
  """A checkpoint whose files cannot be read back."""


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


def _variable_tree(variables, names):
  """A checkpointable node holding ``variables`` under ``names``."""
  node = tf.train.Checkpoint()
  for name, v in zip(names, variables):
    setattr(node, name.replace('/', '__'), v)
  return node


def checkpoint_manager(checkpoint, run_dir, max_to_keep=3):
  return tf.train.CheckpointManager(checkpoint, rundir.checkpoint_dir(run_dir),
                                    max_to_keep=max_to_keep)


def keep_milestone(prefix, run_dir):
  """Copies checkpoint ``prefix`` into ``checkpoints/milestones/`` for good
  (``copy_checkpoint``): a failed copy (a full disk, say) leaves no partial
  file, and the milestone is made again on resuming (``restore_milestones``)
  while its source is kept."""
  copy_checkpoint(prefix, rundir.milestone_dir(run_dir))


def copy_checkpoint(prefix, target):
  """Copies checkpoint ``prefix`` into folder ``target`` (made if missing).

  Each file goes to a temporary name first, removed if the copy fails; the
  data files go first and the index last, so a checkpoint whose index exists
  is complete.

  Returns:
    The copy's prefix.
  """
  os.makedirs(target, exist_ok=True)
  for f in sorted(rundir.checkpoint_files(prefix), key=lambda f: f.endswith('.index')):
    tmp = os.path.join(target, '.tmp-' + os.path.basename(f))
    try:
      shutil.copyfile(f, tmp)
      os.replace(tmp, os.path.join(target, os.path.basename(f)))
    finally:
      if os.path.exists(tmp):
        os.remove(tmp)
  return os.path.join(target, os.path.basename(prefix))


def restore_milestones(run_dir, milestones, epoch, warn=None):
  """Makes again the milestones up to ``epoch`` that a failed copy left out,
  from the rolling checkpoint when it is still there; says once, for each
  that cannot be made, that it is missing. Milestones that a pack left
  behind on purpose (measured already: ``packing.unpack`` records them in
  ``environment.json``) are not missing.

  Returns:
    The milestone epochs that are missing for good.
  """
  warn = warn or (lambda msg: print(msg, file=sys.stderr))
  missing = []
  left_behind = set(rundir.read_environment(run_dir).get('unpacked', {})
                    .get('milestones_left_behind', ()))
  for m in sorted(e for e in milestones if e <= epoch and e not in left_behind):
    if tf.io.gfile.exists(os.path.join(rundir.milestone_dir(run_dir), f'ckpt-{m}.index')):
      continue
    rolling = os.path.join(rundir.checkpoint_dir(run_dir), f'ckpt-{m}')
    if tf.io.gfile.exists(rolling + '.index'):
      keep_milestone(rolling, run_dir)
      continue
    missing.append(m)
  for pattern in ('.tmp-*',):  # a killed copy's leftovers
    for f in tf.io.gfile.glob(os.path.join(rundir.milestone_dir(run_dir), pattern)):
      os.remove(f)
  if missing:
    warn(f'warning: {run_dir}: no checkpoint is left of milestone epoch(s) '
         f'{", ".join(map(str, missing))} (a copy failed after its source rolled over); '
         'the learning curve will lack them')
  return missing


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
  target = os.path.join(rundir.checkpoint_dir(run_dir), 'damaged')
  os.makedirs(target, exist_ok=True)
  tag = 'milestone-' if os.path.dirname(prefix) == rundir.milestone_dir(run_dir) else ''
  for f in rundir.checkpoint_files(prefix):
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
  candidates = rundir.saved_checkpoints(run_dir)
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
      raise rundir.RunDirError(f'{prefix}: does not fit this model ({first[:200]})') from None
    if candidates[0] != prefix:  # the state file may name moved checkpoints
      write_manager_state(run_dir)
    return prefix
  if candidates:
    raise rundir.RunDirError(f'{rundir.checkpoint_dir(run_dir)}: no readable checkpoint left (the damaged '
                      'ones are in checkpoints/damaged/); use a new --run_dir')
  return None


def write_manager_state(run_dir):
  """Rewrites the checkpoint manager's state file to list the rolling
  checkpoints that are there (or removes it when there are none).

  Each is listed with its file's time: the manager rolls over only the
  checkpoints it finds with a time, and would keep the others for good.
  """
  rolling = [p for p in rundir.saved_checkpoints(run_dir)
             if os.path.dirname(p) == rundir.checkpoint_dir(run_dir)]
  state = os.path.join(rundir.checkpoint_dir(run_dir), 'checkpoint')
  if not rolling:
    if os.path.exists(state):
      os.remove(state)
    return
  oldest_first = list(reversed(rolling))
  tf.compat.v1.train.update_checkpoint_state(
      rundir.checkpoint_dir(run_dir), rolling[0], all_model_checkpoint_paths=oldest_first,
      all_model_checkpoint_timestamps=[os.path.getmtime(p + '.index') for p in oldest_first])


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
  source = rundir.read_config(source_dir)
  if source.model != config.model:
    raise rundir.RunDirError(f'--init_from={source_dir}: its architecture ({source.model}) differs '
                      f'from this run\'s ({config.model})')
  if source.data.dataset != config.data.dataset:
    raise rundir.RunDirError(f'--init_from={source_dir}: trained on {source.data.dataset}, not '
                      f'{config.data.dataset}')
  saved = rundir.saved_checkpoints(source_dir)
  if not saved:
    raise rundir.RunDirError(f'--init_from={source_dir}: no checkpoint')
  verify_checkpoint(saved[0])
  # The model's weights only: not the source's generator position or epoch.
  weights = tf.train.Checkpoint(model=_variable_tree(model.weights,
                                                     [v.path for v in model.weights]))
  weights.restore(saved[0]).expect_partial().assert_existing_objects_matched()
  epoch = tf.train.load_checkpoint(saved[0]).get_tensor('epoch/.ATTRIBUTES/VARIABLE_VALUE')
  return {'run_dir': source_dir, 'checkpoint': saved[0], 'epoch': int(epoch),
          'objective': dataclasses.asdict(source.objective)}


def restore(run_dir, checkpoint=None):
  """Rebuilds a run's model and restores a checkpoint.

  Args:
    run_dir: a directory written by ``train.py`` (or a pretrained model's).
    checkpoint: None for the latest, an epoch number (a rolling checkpoint,
      else a milestone), or a checkpoint path.

  Returns:
    ``(config, model, checkpoint_path, epoch)``.
  """
  config = rundir.read_config(run_dir)
  model = model_lib.IWAEModel(config.model)
  ckpt, epoch = make_checkpoint(model)
  if checkpoint is None:
    saved = rundir.saved_checkpoints(run_dir)
    if not saved:
      raise CheckpointError(f'{run_dir}: no checkpoint yet (has train.py run an epoch?)')
    path = saved[0]
  elif str(checkpoint).isdigit():
    path = rundir.checkpoint_path(run_dir, int(checkpoint))
  else:
    path = str(checkpoint)
  if not tf.io.gfile.exists(path + '.index'):
    available = [rundir.epoch_of(p) for p in rundir.saved_checkpoints(run_dir)]
    raise CheckpointError(f'{path}: no such checkpoint (epochs available: '
                          f'{sorted(set(available)) or "none"})')
  verify_checkpoint(path)
  try:
    ckpt.restore(path).expect_partial().assert_existing_objects_matched()
  except (AssertionError, ValueError, tf.errors.OpError) as e:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise CheckpointError(f'{path}: does not match the architecture in '
                          f'{run_dir}/config.json ({first})') from None
  return config, model, path, int(epoch.numpy())


def export_pretrained(run_dir, out_dir, checkpoint=None, results_root=rundir.RESULTS_ROOT):
  """Writes a run's weights, model only, as a run directory of their own.

  ``out_dir`` gets the run's ``config.json`` (with ``exported_from``) and
  ``environment.json``, ``checkpoints/ckpt-<epoch>`` with the model's
  weights only (no optimizer or generator state): what ``evaluate.py``, the
  figure script and ``iwae_tf.pretrained`` need, 1.7 MB for the paper's
  1-layer model; and, when the run was measured at that epoch (K = 5000, the
  full test set), ``measured.json`` with that test NLL. The folder is written
  under a temporary name and renamed when complete; an existing export is
  refused (nothing is overwritten).

  Returns:
    The written checkpoint's prefix.
  """
  config, model, path, epoch = restore(run_dir, checkpoint)
  if os.path.exists(out_dir) and os.listdir(out_dir):
    raise CheckpointError(f'{out_dir}: exists and is not empty; choose another directory')
  tmp = os.path.join(os.path.dirname(os.path.abspath(out_dir)),
                     f'.tmp-{os.path.basename(os.path.normpath(out_dir))}')
  shutil.rmtree(tmp, ignore_errors=True)  # a killed export's leftovers
  os.makedirs(tmp)
  cfg = config.to_dict()
  cfg['run_dir'] = out_dir
  rundir.write_json_atomic(rundir.config_path(tmp), cfg)
  if os.path.exists(rundir.environment_path(run_dir)):
    shutil.copyfile(rundir.environment_path(run_dir), rundir.environment_path(tmp))
  rundir.record_environment(tmp, exported_from={
      'run_dir': os.path.normpath(run_dir), 'checkpoint': path, 'epoch': epoch})
  result = rundir.result_path(run_dir, epoch, 5000, results_root=results_root)
  if os.path.exists(result):
    write_measured(tmp, result)
  weights_only, epoch_var = make_checkpoint(model)
  epoch_var.assign(epoch)
  prefix = checkpoint_manager(weights_only, tmp).save(checkpoint_number=epoch)
  # The manager's state file names the checkpoint relative to its folder, so
  # the folder can move.
  if os.path.isdir(out_dir):
    os.rmdir(out_dir)  # empty (checked above)
  os.replace(tmp, out_dir)
  return os.path.join(out_dir, os.path.relpath(prefix, tmp))


def write_measured(out_dir, result_json):
  """``out_dir/measured.json``: the test NLL of a result file, for ``iwae_tf.pretrained``."""
  r = results.read(result_json)
  if not r.full_test_set:
    raise CheckpointError(f'{result_json}: not a full-test-set result')
  rundir.write_json_atomic(os.path.join(out_dir, 'measured.json'), {
      'test_nll': round(r.nll, 2), 'stderr': round(r.stderr, 2), 'k_nll': r.k_nll,
      'epoch': r.epoch, 'active_units': r.active_units, 'result': os.path.basename(result_json)})

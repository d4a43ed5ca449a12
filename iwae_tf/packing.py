"""Packing an unfinished run, so that it continues on another machine.

A run of the paper's budget takes days; the machine that trains it may not
last that long (a pre-empted cluster job, a lent machine given back). A
pack is the least of a run directory that resumes it where it stopped::

    PACK/<name>/config.json, environment.json   as in the run directory
    PACK/<name>/tensorboard/                    its event files (the loss curves)
    PACK/<name>/checkpoints/ckpt-<E>.*          its newest readable checkpoint
    PACK/<name>/checkpoints/milestones/         the milestones asked for (those
                                                not yet measured, by the queue)
    PACK/<name>/packed.json                     epoch E, when and where from

``pack`` reads the run directory and writes nothing there, so it may run
while the run trains: a checkpoint that rolls over while it is copied is
detected (every copied tensor is read back) and the newer one is packed
instead. A pack is written under a temporary name and replaces the older
pack only when complete (``newest_pack`` finds the complete one where the
machine went between the two). ``unpack`` copies a pack into a run directory that
is behind it (or missing), under the run's lock, and never replaces or
removes a file there; ``train.py`` then resumes from the packed checkpoint,
its generator state and step count included, so the run continues on the
same random streams. The milestones a pack leaves behind (measured already)
are recorded in the run's ``environment.json`` (``unpacked``), so that
resuming does not report them missing.
"""

import json
import os
import shutil
import time

import tensorflow as tf

from iwae_tf import checkpoints
from iwae_tf import rundir

PACKED = 'packed.json'


class PackError(rundir.RunDirError):
  """A run that cannot be packed, or a pack that cannot be unpacked."""


def packed_epoch(pack_dir):
  """The epoch of a pack's checkpoint, or None when ``pack_dir`` is no pack."""
  try:
    return int(_read_packed(pack_dir)['epoch'])
  except (OSError, ValueError, KeyError, TypeError):
    return None


def _copy_newest(run_dir, tmp, attempts=3):
  """Copies the newest checkpoint of ``run_dir`` that reads back whole.

  A damaged checkpoint is skipped (and left where it is) for the next
  older. A rolling checkpoint can also be deleted by the training process
  while it is copied; the copy is then incomplete or unreadable and the
  source gone, and the checkpoints are listed again.

  Returns:
    ``(epoch, prefix of the copy)``.
  """
  for _ in range(attempts):
    for prefix in rundir.saved_checkpoints(run_dir):
      kind = os.path.relpath(os.path.dirname(prefix), run_dir)
      try:
        copy = checkpoints.copy_checkpoint(prefix, os.path.join(tmp, kind))
        checkpoints.verify_checkpoint(copy)
        return rundir.epoch_of(prefix), copy
      except (OSError, checkpoints.DamagedCheckpointError):
        shutil.rmtree(os.path.join(tmp, 'checkpoints'), ignore_errors=True)
        if not tf.io.gfile.exists(prefix + '.index'):
          break  # rolled over meanwhile: list them again
    else:
      raise PackError(f'{run_dir}: no readable checkpoint to pack')
  raise PackError(f'{run_dir}: its checkpoints kept changing while they were copied; '
                  'try again')


def pack(run_dir, pack_dir, milestones=()):
  """Writes the pack of ``run_dir`` to ``pack_dir`` (see module docstring).

  Args:
    run_dir: a run directory of ``train.py``.
    pack_dir: the pack's folder, ``PACK/<name>``; an older pack there is
      replaced once the new one is complete.
    milestones: epochs whose milestone checkpoints are packed too, where the
      run has them (those older than the newest checkpoint).

  Returns:
    The packed epoch.

  Raises:
    PackError: ``run_dir`` is no run directory, or has no readable checkpoint.
  """
  rundir.read_config(run_dir)  # a run directory, or RunDirError
  parent = os.path.dirname(os.path.abspath(pack_dir))
  name = os.path.basename(os.path.normpath(pack_dir))
  os.makedirs(parent, exist_ok=True)
  tmp = os.path.join(parent, f'.tmp-{name}')
  shutil.rmtree(tmp, ignore_errors=True)  # a killed pack's leftovers
  os.makedirs(tmp)
  try:
    for path in (rundir.config_path(run_dir), rundir.environment_path(run_dir)):
      if os.path.exists(path):
        shutil.copyfile(path, os.path.join(tmp, os.path.basename(path)))
    events = os.path.join(run_dir, 'tensorboard')
    if os.path.isdir(events):
      shutil.copytree(events, os.path.join(tmp, 'tensorboard'))
    epoch, _ = _copy_newest(run_dir, tmp)
    for m in sorted(set(milestones)):
      prefix = os.path.join(rundir.milestone_dir(run_dir), f'ckpt-{m}')
      if m < epoch and tf.io.gfile.exists(prefix + '.index'):
        checkpoints.verify_checkpoint(
            checkpoints.copy_checkpoint(prefix, rundir.milestone_dir(tmp)))
    rundir.write_json_atomic(os.path.join(tmp, PACKED), {
        'epoch': epoch, 'milestones': _milestone_epochs(tmp),
        'packed_at': time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime()),
        'from': os.path.normpath(run_dir)})
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  old = os.path.join(parent, f'.old-{name}')
  shutil.rmtree(old, ignore_errors=True)
  if os.path.exists(pack_dir):
    os.replace(pack_dir, old)
  os.replace(tmp, pack_dir)
  shutil.rmtree(old, ignore_errors=True)
  return epoch


def _milestone_epochs(run_dir):
  return sorted(map(rundir.epoch_of, rundir.checkpoints_in(rundir.milestone_dir(run_dir))))


def unpack(pack_dir, run_dir):
  """Copies the pack ``pack_dir`` into ``run_dir`` when the run is behind it.

  Files the run directory already has are kept as they are (its own
  checkpoints, event files and milestones); the packed checkpoint becomes
  its newest, and the checkpoint manager's state file lists it, so that
  ``train.py`` resumes from it and later rolls it over as its own.

  Returns:
    The packed epoch when it was unpacked; None when the run directory is
    already at that epoch or beyond (nothing is copied).

  Raises:
    PackError: ``pack_dir`` is no pack, or holds another experiment than
      ``run_dir``.
    RunDirError: another process holds the run directory.
  """
  epoch = packed_epoch(pack_dir)
  if epoch is None:
    raise PackError(f'{pack_dir}: not a pack (no readable {PACKED})')
  theirs = rundir.read_config(pack_dir)
  if os.path.exists(rundir.config_path(run_dir)):
    diffs = rundir.identity_differences(rundir.read_config(run_dir), theirs)
    if diffs:
      raise PackError(f'{pack_dir}: packs another experiment than {run_dir} ({diffs})')
  if rundir.newest_epoch(run_dir) >= epoch:
    return None
  with rundir.locked(run_dir):
    for path in (rundir.config_path(pack_dir), rundir.environment_path(pack_dir)):
      if os.path.exists(path):
        rundir.copy_if_absent(path, os.path.join(run_dir, os.path.basename(path)))
    events = os.path.join(pack_dir, 'tensorboard')
    for folder, _, files in os.walk(events):
      for f in files:
        rundir.copy_if_absent(
            os.path.join(folder, f),
            os.path.join(run_dir, 'tensorboard', os.path.relpath(folder, events), f))
    for prefix in rundir.saved_checkpoints(pack_dir):
      kind = os.path.relpath(os.path.dirname(prefix), pack_dir)
      target = os.path.join(run_dir, kind)
      if not tf.io.gfile.exists(os.path.join(target, os.path.basename(prefix) + '.index')):
        checkpoints.verify_checkpoint(checkpoints.copy_checkpoint(prefix, target))
    checkpoints.write_manager_state(run_dir)
    carried = set(_milestone_epochs(pack_dir))
    rundir.record_environment(run_dir, unpacked={
        'from': os.path.normpath(pack_dir), 'epoch': epoch,
        'packed_at': _read_packed(pack_dir).get('packed_at'),
        'milestones_left_behind': [m for m in rundir.read_config(run_dir).milestones
                                   if m < epoch and m not in carried]})
  return epoch


def _read_packed(pack_dir):
  with open(os.path.join(pack_dir, PACKED)) as f:
    return json.load(f)


# ------------------------------------------------------- the queue's runs
def pack_experiments(exps, roots, dest, say=print):
  """Packs each unfinished run of ``exps`` (``pack_experiment``). Returns the
  names packed."""
  return [exp.name for exp in exps if pack_experiment(exp, roots, dest, say)]


def pack_experiment(exp, roots, dest, say=print, stale_only=False):
  """Packs the run of ``exp`` into ``dest/<name>`` when it is unfinished,
  with the milestones it has reached but not yet measured; removes its pack
  when the run is done. With ``stale_only``, a run whose pack is at its
  newest checkpoint already is not packed again (the queue's
  ``keep_packed``). Returns whether it was packed."""
  from iwae_tf import reproduction  # pylint: disable=import-outside-toplevel
  run_dir, target = exp.run_dir(roots), os.path.join(dest, exp.name)
  if reproduction.state(exp, roots) == 'done':
    if os.path.isdir(target):
      shutil.rmtree(target)
      say(f'{exp.name}: done; its pack {target} was removed')
    return False
  if not rundir.saved_checkpoints(run_dir):
    return False
  before = packed_epoch(target)
  if stale_only and before is not None and before >= rundir.newest_epoch(run_dir):
    return False
  unmeasured = [e for e in exp.milestones if not os.path.exists(exp.result_path(e, roots))]
  epoch = pack(run_dir, target, unmeasured)
  note = '' if before is None else f' (replacing the pack of epoch {before})'
  say(f'{exp.name}: packed at epoch {epoch} into {target}{note}')
  return True


def newest_pack(source, name):
  """The pack of run ``name`` in ``source``, or None.

  That is ``source/<name>``, unless ``pack`` was cut off (the machine gone)
  after its new pack was complete (``.tmp-<name>``, whose ``packed.json`` is
  written last) and before it replaced the old one, which may be
  ``.old-<name>`` by then: of the complete ones, the newest.
  """
  found = [(packed_epoch(d), d) for d in (os.path.join(source, prefix + name)
                                           for prefix in ('', '.tmp-', '.old-'))]
  found = [(epoch, d) for epoch, d in found if epoch is not None]
  return max(found, key=lambda f: f[0])[1] if found else None  # ties: the first


def unpack_experiments(exps, roots, source, say=print):
  """Unpacks ``source/<name>`` into each run of ``exps`` that is behind its
  pack (``unpack``). Returns the names unpacked."""
  unpacked = []
  for exp in exps:
    pack_dir = newest_pack(source, exp.name)
    if pack_dir is None:
      continue
    run_dir = exp.run_dir(roots)
    epoch = unpack(pack_dir, run_dir)
    if epoch is None:
      say(f'{exp.name}: {run_dir} is at epoch {rundir.newest_epoch(run_dir)}, at or past its pack '
          f'({packed_epoch(pack_dir)}); left as it is')
    else:
      say(f'{exp.name}: unpacked {pack_dir} (epoch {epoch}) into {run_dir}')
      unpacked.append(exp.name)
  return unpacked

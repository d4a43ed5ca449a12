"""Packs: an unfinished run carried to another machine (iwae_tf/packing.py)."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from helpers import ROOT, tiny_config, weights
from iwae_tf import checkpoints
from iwae_tf import experiments
from iwae_tf import packing
from iwae_tf import rundir
from iwae_tf import training


def _files(run_dir):
  """Every file of a directory with its size and modification time."""
  out = {}
  for folder, _, files in os.walk(run_dir):
    for f in files:
      path = os.path.join(folder, f)
      out[os.path.relpath(path, run_dir)] = (os.path.getsize(path), os.path.getmtime(path))
  return out


def test_a_packed_run_resumes_exactly_in_a_new_run_directory(tmp_path):
  """Pack at epoch 3 (milestone 1 with it), lose the run directory, unpack
  into a fresh one: training to epoch 5 ends with the weights of a run that
  was never interrupted, and the packed checkpoint rolls over as its own."""
  straight = training.train(tiny_config(tmp_path / 'straight', epochs=5))
  run = tmp_path / 'run'
  training.train(tiny_config(run, epochs=3))
  before = _files(run)
  pack = tmp_path / 'inflight' / 'run'
  assert packing.pack(str(run), str(pack), milestones=[1, 4]) == 3
  assert _files(run) == before  # packing writes nothing into the run
  assert sorted(os.listdir(pack / 'checkpoints')) == ['ckpt-3.data-00000-of-00001',
                                                      'ckpt-3.index', 'milestones']
  assert json.loads((pack / 'packed.json').read_text())['milestones'] == [1]
  assert os.listdir(pack / 'tensorboard')
  assert os.listdir(tmp_path / 'inflight') == ['run']  # no temporary folder left
  shutil.rmtree(run)

  assert packing.unpack(str(pack), str(run)) == 3
  assert rundir.newest_epoch(str(run)) == 3
  assert os.path.exists(run / 'checkpoints' / 'milestones' / 'ckpt-1.index')
  env = rundir.read_environment(str(run))['unpacked']
  assert env['epoch'] == 3 and env['milestones_left_behind'] == []
  resumed = training.train(tiny_config(run, epochs=5))
  for u, v in zip(weights(straight), weights(resumed)):
    np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-7)
  state = (run / 'checkpoints' / 'checkpoint').read_text()
  assert 'ckpt-5' in state and 'ckpt-3' in state
  assert not os.path.exists(run / 'checkpoints' / 'ckpt-2.index')
  training.train(tiny_config(run, epochs=6))
  assert not os.path.exists(run / 'checkpoints' / 'ckpt-3.index')  # rolled over
  assert os.path.exists(run / 'checkpoints' / 'milestones' / 'ckpt-4.index')


def test_milestones_left_behind_are_not_reported_missing_on_resuming(tmp_path):
  run, pack = tmp_path / 'run', tmp_path / 'inflight' / 'run'
  training.train(tiny_config(run, epochs=2))
  packing.pack(str(run), str(pack))  # milestone 1 measured already: not carried
  shutil.rmtree(run)
  packing.unpack(str(pack), str(run))
  assert rundir.read_environment(str(run))['unpacked']['milestones_left_behind'] == [1]
  said = []
  assert checkpoints.restore_milestones(str(run), (1, 4), 2, warn=said.append) == []
  assert said == []
  os.remove(run / 'environment.json')  # without the record, milestone 1 is missing
  assert checkpoints.restore_milestones(str(run), (1, 4), 2, warn=said.append) == [1]
  assert 'milestone epoch(s) 1' in said[0]


def test_unpacking_never_replaces_a_run_that_is_as_far_or_is_another(tmp_path):
  run, pack = tmp_path / 'run', tmp_path / 'inflight' / 'run'
  training.train(tiny_config(run, epochs=2))
  packing.pack(str(run), str(pack))
  training.train(tiny_config(run, epochs=3))
  before = _files(run)
  assert packing.unpack(str(pack), str(run)) is None
  assert _files(run) == before
  other = tmp_path / 'other'  # another experiment: four latents
  other.mkdir()
  cfg = json.loads((run / 'config.json').read_text())
  cfg['model']['latents'] = [4]
  (other / 'config.json').write_text(json.dumps(cfg))
  with pytest.raises(packing.PackError, match='another experiment .*model: '):
    packing.unpack(str(pack), str(other))
  with pytest.raises(packing.PackError, match='not a pack'):
    packing.unpack(str(tmp_path / 'inflight'), str(run))
  with rundir.locked(str(tmp_path / 'behind')):
    with pytest.raises(rundir.RunDirError, match='in use by another process'):
      packing.unpack(str(pack), str(tmp_path / 'behind'))


def test_a_failed_pack_keeps_the_older_one_and_damaged_or_rolled_checkpoints_are_skipped(
    tmp_path, monkeypatch):
  run, pack = tmp_path / 'run', tmp_path / 'inflight' / 'run'
  training.train(tiny_config(run, epochs=3))
  packing.pack(str(run), str(pack))
  old, before = _files(pack), _files(run)
  verify = checkpoints.verify_checkpoint

  def damaged(epochs):
    def check(prefix):
      if rundir.epoch_of(prefix) in epochs:
        raise checkpoints.DamagedCheckpointError(f'{prefix}: simulated')
      return verify(prefix)
    return check
  with monkeypatch.context() as m:
    m.setattr(checkpoints, 'verify_checkpoint', damaged({1, 2, 3}))
    with pytest.raises(packing.PackError, match='no readable checkpoint'):
      packing.pack(str(run), str(pack))
    assert _files(pack) == old and packing.packed_epoch(str(pack)) == 3
    assert os.listdir(tmp_path / 'inflight') == ['run']
    m.setattr(checkpoints, 'verify_checkpoint', damaged({3}))
    assert packing.pack(str(run), str(pack)) == 2  # the next older, and the run untouched
  assert _files(run) == before

  # The training process deletes the newest checkpoint while it is copied:
  # the pack lists the checkpoints again.
  copy = checkpoints.copy_checkpoint
  calls = []

  def rolling_over(prefix, target):
    calls.append(prefix)
    if len(calls) == 1:
      for f in rundir.checkpoint_files(prefix):
        os.remove(f)
      raise FileNotFoundError(prefix)
    return copy(prefix, target)
  monkeypatch.setattr(checkpoints, 'copy_checkpoint', rolling_over)
  assert packing.pack(str(run), str(pack)) == 2
  assert calls[0].endswith('ckpt-3') and calls[1].endswith('ckpt-2')


def _tiny(epochs):
  return experiments.Experiment(
      (('latents', '3'), ('hidden', '8'), ('objective', 'vae'), ('k', 2),
       ('schedule', 'poster'), ('epochs', epochs), ('limit_train', 60),
       ('steps_per_execution', 3), ('verbose', 0)), k_nll=4, limit_test=20, export=False)


def test_the_queue_packs_unfinished_runs_and_unpacks_them_on_the_next_machine(tmp_path):
  """``reproduce.py --pack`` and ``--unpack`` on one run in flight: the pack
  holds its unmeasured milestone, and the unpacked run is listed where it
  stopped."""
  exp = _tiny(5)
  roots = experiments.Roots(str(tmp_path / 'runs'), str(tmp_path / 'results'),
                            str(tmp_path / 'pretrained'))
  training.train(dataclasses.replace(exp.config(roots), epochs=3))
  lines = []
  assert packing.pack_experiments([exp], roots, str(tmp_path / 'inflight'), lines.append) == [
      exp.name]
  pack = tmp_path / 'inflight' / exp.name
  assert packing.packed_epoch(str(pack)) == 3
  assert json.loads((pack / 'packed.json').read_text())['milestones'] == [1]
  shutil.rmtree(roots.runs)  # a new machine: the runs are gone
  assert packing.unpack_experiments([exp], roots, str(tmp_path / 'inflight'), lines.append) == [
      exp.name]
  assert f'{exp.name}: unpacked' in lines[-1]
  assert rundir.newest_epoch(exp.run_dir(roots)) == 3
  assert rundir.read_environment(exp.run_dir(roots))['unpacked']['milestones_left_behind'] == []
  assert packing.unpack_experiments([exp], roots, str(tmp_path / 'inflight'), lines.append) == []
  assert 'left as it is' in lines[-1]
  result = exp.result_path(5, roots)  # the run finishes: its pack goes
  os.makedirs(os.path.dirname(result))
  open(result, 'w').close()
  assert packing.pack_experiments([exp], roots, str(tmp_path / 'inflight'), lines.append) == []
  assert not pack.exists() and 'its pack' in lines[-1]


def test_reproduce_py_packs_and_unpacks_the_named_sets(tmp_path):
  """The flags: ``--pack`` with nothing in flight packs nothing and exits;
  ``--unpack`` of a folder without packs goes on to ``--status``."""
  cmd = [sys.executable, os.path.join(ROOT, 'reproduce.py'), 'smoke',
         f'--runs_root={tmp_path}/runs', f'--results_root={tmp_path}/results',
         f'--pretrained_root={tmp_path}/pretrained']
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
  out = subprocess.run(cmd + [f'--pack={tmp_path}/inflight'], capture_output=True, text=True,
                       env=env, cwd=ROOT, timeout=120)
  assert out.returncode == 0 and not os.path.exists(tmp_path / 'runs' / 'smoke'), out.stderr
  out = subprocess.run(cmd + [f'--unpack={tmp_path}/inflight', '--status'], capture_output=True,
                       text=True, env=env, cwd=ROOT, timeout=120)
  assert out.returncode == 0, out.stderr
  assert '| run | state |' in out.stdout


def test_the_newest_complete_pack_is_found_where_a_pack_was_cut_off(tmp_path):
  """The machine may go between the two renames that put a new pack in
  place of the old (or while the old one is removed): of ``<name>``,
  ``.tmp-<name>`` (complete once its packed.json is written) and
  ``.old-<name>``, unpacking takes the newest complete one."""
  def fake(folder, epoch=None):
    os.makedirs(tmp_path / folder)
    if epoch is not None:
      (tmp_path / folder / 'packed.json').write_text(json.dumps({'epoch': epoch}))

  assert packing.newest_pack(str(tmp_path), 'run') is None
  fake('.old-run', 3)
  fake('.tmp-run')  # its packed.json not yet written: incomplete
  assert packing.newest_pack(str(tmp_path), 'run') == str(tmp_path / '.old-run')
  (tmp_path / '.tmp-run' / 'packed.json').write_text('{"epoch": 4}')
  assert packing.newest_pack(str(tmp_path), 'run') == str(tmp_path / '.tmp-run')
  fake('run', 4)  # in place; the old one not yet removed
  assert packing.newest_pack(str(tmp_path), 'run') == str(tmp_path / 'run')


def test_the_queue_keeps_the_packs_of_its_runs_fresh(tmp_path, monkeypatch):
  """``Queue(pack_dir=...)`` packs a run when it has gone on past its pack,
  at most every ``pack_every`` seconds, says a pack that fails in one line
  and keeps the older one, and removes the pack of a run that is done."""
  from iwae_tf import reproduction  # pylint: disable=import-outside-toplevel
  exp = _tiny(5)
  roots = experiments.Roots(str(tmp_path / 'runs'), str(tmp_path / 'results'),
                            str(tmp_path / 'pretrained'))
  dest = tmp_path / 'inflight'
  lines = []
  queue = reproduction.Queue([exp], roots, say=lines.append, pack_dir=str(dest),
                             pack_every=3600)
  queue._keep_packed()  # nothing trained: nothing packed
  assert lines == [] and not dest.exists()
  training.train(dataclasses.replace(exp.config(roots), epochs=2))
  queue._keep_packed()  # within the interval
  assert lines == []
  queue._keep_packed(now=True)
  assert lines == [f'{exp.name}: packed at epoch 2 into {dest / exp.name}']
  queue._keep_packed(now=True)  # the run has not gone on: not packed again
  assert len(lines) == 1
  training.train(dataclasses.replace(exp.config(roots), epochs=3))

  def full_disk(*args, **kwargs):
    raise OSError(28, 'No space left on device')
  with monkeypatch.context() as m:
    m.setattr(packing.shutil, 'copytree', full_disk)
    queue._keep_packed(now=True)
  assert lines[-1] == (f'{exp.name}: not packed (OSError: [Errno 28] No space left on device); '
                       'its older pack is kept')
  assert packing.packed_epoch(str(dest / exp.name)) == 2
  assert sorted(os.listdir(dest)) == [exp.name]
  queue.pack_every = 0
  queue._keep_packed()
  assert lines[-1] == (f'{exp.name}: packed at epoch 3 into {dest / exp.name} '
                       '(replacing the pack of epoch 2)')
  result = exp.result_path(5, roots)  # the run is done: its pack goes
  os.makedirs(os.path.dirname(result))
  open(result, 'w').close()
  queue._keep_packed()
  assert 'its pack' in lines[-1] and os.listdir(dest) == []

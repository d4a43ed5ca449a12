"""Faults of long runs: divergence, damaged checkpoints, milestones (tiny models)."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from iwae_tf import callbacks
from iwae_tf import checkpoints
from iwae_tf import config
from iwae_tf import paper
from iwae_tf import rundir
from iwae_tf import training
from helpers import ROOT, tiny_config, weights



def paper_config(run_dir, epochs, **kw):
  cfg = tiny_config(run_dir, epochs=epochs, **kw)
  return config.TrainConfig(**{**cfg.__dict__,
                               'optim': config.OptimConfig(schedule='paper')})


def checkpoint_values(prefix):
  reader = tf.train.load_checkpoint(prefix)
  return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def test_diverging_run_stops_before_saving_anything_non_finite(tmp_path, monkeypatch):
  """Two good epochs, then a learning rate that blows the model up: the run
  raises DivergenceError, every checkpoint on disk is finite, and the last
  good one stays the latest."""
  real = paper.learning_rate
  monkeypatch.setattr(paper, 'learning_rate',
                      lambda epoch, base=1e-3, schedule="paper", **kw: (real(epoch, base, schedule, **kw) if epoch < 2 else 1e4))
  run = tmp_path / 'run'
  with pytest.raises(callbacks.DivergenceError, match=r'(step|epoch) \d+: .* (is (nan|inf|-inf)|has \d+ non-finite values)'):
    training.train(tiny_config(run, epochs=8))
  saved = rundir.saved_checkpoints(str(run))
  assert saved, 'the two good epochs were checkpointed'
  latest = tf.train.latest_checkpoint(str(run / 'checkpoints'))
  assert latest == saved[0] and rundir.epoch_of(latest) < 8
  for prefix in saved:
    for name, value in checkpoint_values(prefix).items():
      if isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.floating):
        assert np.all(np.isfinite(value)), (prefix, name)


def test_cli_divergence_is_one_line_and_nonzero(tmp_path):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
  p = subprocess.run(
      [sys.executable, os.path.join(ROOT, 'train.py'), '--learning_rate=1000', '--latents=2',
       '--epochs=3', '--limit_train=2000', '--verbose=0', f'--run_dir={tmp_path / "r"}'],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert p.returncode != 0
  errors = [l for l in p.stderr.splitlines() if l.startswith('error:')]
  assert len(errors) == 1 and 'is nan' in errors[0] and '--learning_rate' in errors[0], p.stderr
  assert 'done' not in p.stdout
  assert not rundir.saved_checkpoints(str(tmp_path / 'r'))  # nothing non-finite was saved


def training_checkpoint(cfg):
  """The checkpoint object that ``training.train`` restores into."""
  model = training.build_model(cfg)
  trainer = training.build_trainer(cfg, model)
  return checkpoints.make_checkpoint(model, training.build_optimizer(cfg, trainer), trainer.rng)


def test_damaged_newest_checkpoint_is_skipped_and_the_run_resumes_exactly(tmp_path):
  straight = training.train(tiny_config(tmp_path / 'a', epochs=4))
  run = tmp_path / 'b'
  training.train(tiny_config(run, epochs=3))
  data = run / 'checkpoints' / 'ckpt-3.data-00000-of-00001'
  with open(data, 'r+b') as f:  # a disk that filled up mid-write
    f.truncate(os.path.getsize(data) // 2)
  warnings = []
  ckpt, epoch = training_checkpoint(tiny_config(run))
  restored = checkpoints.restore_newest_readable(ckpt, str(run), warn=warnings.append)
  assert restored.endswith('ckpt-2') and int(epoch.numpy()) == 2
  assert len(warnings) == 1 and 'ckpt-3 is damaged' in warnings[0]
  assert sorted(os.listdir(run / 'checkpoints' / 'damaged')) == [
      'ckpt-3.data-00000-of-00001', 'ckpt-3.index']  # kept for inspection
  assert tf.train.latest_checkpoint(str(run / 'checkpoints')).endswith('ckpt-2')
  resumed = training.train(tiny_config(run, epochs=4))
  for u, v in zip(weights(straight), weights(resumed)):
    np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-7)
  assert tf.train.latest_checkpoint(str(run / 'checkpoints')).endswith('ckpt-4')


def test_altered_bytes_are_caught_by_the_checksums(tmp_path):
  run = tmp_path / 'run'
  training.train(tiny_config(run, epochs=1))
  data = run / 'checkpoints' / 'ckpt-1.data-00000-of-00001'
  raw = bytearray(data.read_bytes())
  raw[len(raw) // 2] ^= 0xFF
  data.write_bytes(bytes(raw))
  with pytest.raises(checkpoints.DamagedCheckpointError, match='Checksum does not match'):
    checkpoints.verify_checkpoint(str(run / 'checkpoints' / 'ckpt-1'))


def test_milestones_are_kept_at_the_end_of_each_stage(tmp_path):
  run = tmp_path / 'run'
  training.train(paper_config(run, epochs=5))
  milestones = run / 'checkpoints' / 'milestones'
  assert sorted(os.listdir(milestones)) == [
      'ckpt-1.data-00000-of-00001', 'ckpt-1.index', 'ckpt-4.data-00000-of-00001', 'ckpt-4.index']
  assert not (run / 'checkpoints' / 'ckpt-1.index').exists()  # rolled out, the milestone stays
  one_epoch = training.train(paper_config(tmp_path / 'one', epochs=1))
  values = checkpoint_values(rundir.checkpoint_path(str(run), 1))
  assert rundir.checkpoint_path(str(run), 1).startswith(str(milestones))
  for v in one_epoch.model.weights:
    key = f"model/{v.path.replace('/', '__')}/.ATTRIBUTES/VARIABLE_VALUE"
    np.testing.assert_allclose(values[key], v.numpy(), rtol=1e-6)
  assert paper.STAGE_ENDS == (1, 4, 13, 40, 121, 364, 1093, 3280)


def test_every_rolling_checkpoint_damaged_falls_back_to_a_milestone(tmp_path):
  run = tmp_path / 'run'
  training.train(paper_config(run, epochs=6))
  for name in os.listdir(run / 'checkpoints'):
    if name.endswith('.index'):
      (run / 'checkpoints' / name).write_bytes(b'garbage')
  warnings = []
  ckpt, epoch = training_checkpoint(paper_config(run, 6))
  restored = checkpoints.restore_newest_readable(ckpt, str(run), warn=warnings.append)
  assert restored == str(run / 'checkpoints' / 'milestones' / 'ckpt-4')
  assert int(epoch.numpy()) == 4 and len(warnings) == 3
  assert not os.path.exists(run / 'checkpoints' / 'checkpoint')  # no stale state left
  training.train(paper_config(run, epochs=6))  # resumes from the milestone and finishes
  assert tf.train.latest_checkpoint(str(run / 'checkpoints')).endswith('ckpt-6')


@pytest.mark.parametrize('what', ['weight', 'optimizer variable'])
def test_a_non_finite_weight_or_optimizer_moment_stops_the_epoch(tmp_path, what):
  """An infinite Adam second moment leaves the loss and the weights finite
  (its weight's update is 0 from then on), yet must not be checkpointed."""
  cfg = tiny_config(tmp_path / 'run', epochs=1)
  trainer = training.build_trainer(cfg, training.build_model(cfg))
  optimizer = training.build_optimizer(cfg, trainer)
  stop = callbacks.StopOnDivergence(str(tmp_path / 'run'))
  stop.set_model(trainer)
  stop.on_epoch_end(0, {'loss': 1.0})  # all finite: no error
  if what == 'weight':
    var = trainer.weights[0]
  else:
    var = next(v for v in optimizer.variables if v.path.endswith('_velocity'))
  var.assign(tf.fill(var.shape, np.inf))
  with pytest.raises(callbacks.DivergenceError,
                     match=f'epoch 1: {what} {var.path} has {np.prod(var.shape)} non-finite'):
    stop.on_epoch_end(0, {'loss': 1.0})

"""tf.distribute: two replicas on two logical CPU devices (conftest.py) train
exactly as one device does, and checkpoints move between strategies."""

import dataclasses
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from iwae_tf import checkpoints
from iwae_tf import config
from iwae_tf import distribute
from iwae_tf import logs
from iwae_tf import training
from helpers import ROOT, tiny_config, weights

TWO_CPUS = ('/cpu:0', '/cpu:1')
# Parameters move by up to the learning rate (1e-3) per Adam step. Adam
# divides each gradient by its running RMS, so for weights of rarely-on pixels
# (tiny, intermittent gradients) the rounding of a different summation order
# is amplified: observed up to 1.4e-6 after 8 steps; a wrong split of the
# batch or of the noise moves every parameter by about the learning rate.
PARAM_ATOL = 1e-5


def mirrored(cfg, run_dir, **kw):
  return dataclasses.replace(cfg, run_dir=str(run_dir), strategy='mirrored', devices=TWO_CPUS,
                             **kw)


def base_config(run_dir, epochs=2, **kw):
  # 80 images, batch 20: 4 steps an epoch, 2 steps per call.
  return tiny_config(run_dir, k=3, epochs=epochs, **kw)


def assert_same_training(run_a, model_a, run_b, model_b):
  for a, b in zip(weights(model_a), weights(model_b)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=PARAM_ATOL)
  sa, sb = (logs.read_scalars(str(r / 'tensorboard')) for r in (run_a, run_b))
  for key in ('train/epoch_loss', 'train/loss_per_step', 'train/L_3', 'validation/L_3'):
    assert [s for s, _ in sa[key]] == [s for s, _ in sb[key]], key
    np.testing.assert_allclose([v for _, v in sa[key]], [v for _, v in sb[key]], rtol=1e-5,
                               err_msg=key)


@pytest.fixture(scope='module')
def one_device(tmp_path_factory):
  run = tmp_path_factory.mktemp('one_device') / 'run'
  return run, training.train(base_config(run))


def test_two_replicas_match_one_device(tmp_path, one_device):
  run_a, model_a = one_device
  run_b = tmp_path / 'mirrored'
  model_b = training.train(mirrored(base_config(run_b), run_b))
  assert model_b.distribute_strategy.num_replicas_in_sync == 2
  assert_same_training(run_a, model_a, run_b, model_b)


def test_split_gradient_estimator_matches_one_device(tmp_path):
  """DReG: encoder and decoder gradients from different surrogates, 2 layers."""
  def cfg(run):
    c = base_config(run, latents=(4, 2))
    return dataclasses.replace(c, objective=config.ObjectiveConfig('iwae', 3, 'dreg'))
  a = training.train(cfg(tmp_path / 'a'))
  b = training.train(mirrored(cfg(tmp_path / 'b'), tmp_path / 'b'))
  for x, y in zip(weights(a), weights(b)):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=PARAM_ATOL)


@pytest.mark.parametrize('first', ['mirrored', 'default'])
def test_checkpoint_resumes_under_the_other_strategy(tmp_path, one_device, first):
  run_a, model_a = one_device
  run = tmp_path / 'run'
  one, two = base_config(run, epochs=1), base_config(run, epochs=2)
  if first == 'mirrored':
    one = mirrored(one, run)
  else:
    two = mirrored(two, run)
  training.train(one)
  model = training.train(two)
  for a, b in zip(weights(model_a), weights(model)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=PARAM_ATOL)


@pytest.mark.parametrize('estimator', ['iwae', 'dreg'])
def test_replicas_steps_add_up_to_the_global_step(estimator):
  """A replica's step (``Trainer._step`` with its ``Shard``) binarises and
  samples with its rows of the global batch's noise: the two replicas'
  scaled gradients add up to the one-device gradient of the whole batch, and
  their bounds average to its bound."""
  from iwae_tf import model as model_lib, objectives, trainer as trainer_lib
  m = model_lib.IWAEModel(config.ModelConfig(latents=(3, 2), hidden=((8,), (4,)), data_dim=12))
  t = trainer_lib.Trainer(m, objectives.make(config.ObjectiveConfig('iwae', 3, estimator)))
  x = tf.constant(np.random.default_rng(0).integers(0, 256, (6, 12)), tf.int32)
  seeds = tf.constant([[1, 2], [1, 3]])
  variables = t._step(x, seeds)[3]  # eagerly: the variables, in the gradients' order
  step = tf.function(lambda *args: t._step(*args)[:3], jit_compile=True)
  _, bound, grads = step(x, seeds)
  parts = [step(x, seeds, distribute.Shard(tf.constant(i), 2)) for i in range(2)]
  np.testing.assert_allclose((parts[0][1] + parts[1][1]) / 2, bound, rtol=1e-5)
  for i, v in enumerate(variables):
    np.testing.assert_allclose(parts[0][2][i] + parts[1][2][i], grads[i], rtol=1e-4, atol=1e-6,
                               err_msg=v.path)


def test_take_rows():
  x = tf.reshape(tf.range(24), [2, 6, 2])
  shard = distribute.Shard(tf.constant(1), 3)
  np.testing.assert_array_equal(distribute.take_rows(x, shard, -2), x[:, 2:4])
  np.testing.assert_array_equal(distribute.take_rows(x, shard, 1), x[:, 2:4])
  np.testing.assert_array_equal(distribute.take_rows(x, None, 1), x)


def test_bad_strategy_settings_are_one_line_errors():
  with pytest.raises(config.ConfigError, match='--strategy'):
    config.TrainConfig(strategy='tpu')
  with pytest.raises(config.ConfigError, match='--devices is only for'):
    config.TrainConfig(devices=TWO_CPUS)
  with pytest.raises(config.ConfigError, match='not divisible'):
    config.TrainConfig(strategy='mirrored', devices=('/cpu:0', '/cpu:1', '/cpu:0'))
  with pytest.raises(distribute.StrategyError, match='expected one of'):
    distribute.make_strategy('tpu')
  with pytest.raises(distribute.StrategyError, match='no device /gpu:7'):
    distribute.make_strategy('mirrored', ('/gpu:7',))
  with pytest.raises(distribute.StrategyError, match='not a device name'):
    distribute.make_strategy('mirrored', ('gpu-seven',))
  strategy = distribute.make_strategy('mirrored', TWO_CPUS)
  with pytest.raises(distribute.StrategyError, match='not divisible'):
    distribute.check_batch(21, strategy)


def _free_ports(n):
  socks = [socket.socket() for _ in range(n)]
  for s in socks:
    s.bind(('localhost', 0))
  ports = [s.getsockname()[1] for s in socks]
  for s in socks:
    s.close()
  return ports


def test_two_workers_match_one_device(tmp_path, one_device):
  """MultiWorkerMirroredStrategy: two train.py processes on this host, one CPU
  replica each, configured by TF_CONFIG, train as one device does."""
  run_a, model_a = one_device
  run = tmp_path / 'run'
  workers = [f'localhost:{p}' for p in _free_ports(2)]
  flags = ['--strategy=multiworker', f'--run_dir={run}', '--epochs=2', '--limit_train=80',
           '--validation_size=100', '--latents=3', '--hidden=16', '--k=3', '--schedule=poster',
           '--steps_per_execution=2', '--verbose=0']
  procs = []
  for index in range(2):
    env = dict(os.environ, TF_CONFIG=json.dumps(
        {'cluster': {'worker': workers}, 'task': {'type': 'worker', 'index': index}}))
    procs.append(subprocess.Popen([sys.executable, os.path.join(ROOT, 'train.py'), *flags],
                                  env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True))
  try:
    outputs = [p.communicate(timeout=240)[0] for p in procs]
  finally:
    for p in procs:
      p.kill()
  for p, out in zip(procs, outputs):
    assert p.returncode == 0, out[-3000:]
  _, model, _, epoch = checkpoints.restore(str(run))
  assert epoch == 2
  for a, b in zip(weights(model_a), weights(model)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=PARAM_ATOL)
  scalars = logs.read_scalars(str(run / 'tensorboard'))
  np.testing.assert_allclose([v for _, v in scalars['train/epoch_loss']],
                             [v for _, v in logs.read_scalars(
                                 str(run_a / 'tensorboard'))['train/epoch_loss']], rtol=1e-5)

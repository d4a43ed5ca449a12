"""--procedure=original, part by part, against direct transcriptions of the original
code's formulas (yburda/iwae: optimizers.py, train.py, iwae.py, datasets.py,
experiments.py), and its configuration."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from iwae_tf import config
from iwae_tf import datasets as data_lib
from iwae_tf import objectives
from iwae_tf import paper
from iwae_tf import rundir
from iwae_tf import trainer as trainer_lib
from iwae_tf import training
from helpers import tiny_config



def test_adam_matches_the_transcribed_update():
  """m <- b1 m + (1 - b1) g, v <- b2 v + (1 - b2) g^2 from m = 0, v = 1;
  alpha = lr sqrt(1 - b2^t) / (1 - b1^t), t = 1, 2, ... (kept across a change
  of learning rate, as between the original code's stages);
  param <- param - alpha m / (sqrt(v) + 1e-4)."""
  rng = np.random.default_rng(0)
  p0 = rng.normal(size=(3, 2)).astype(np.float32)
  grads = rng.normal(size=(6, 3, 2)).astype(np.float32) * 3
  lrs = [1e-3] * 3 + [7.2e-4] * 3
  var = tf.Variable(p0)
  opt = training.OriginalAdam(1e-3, beta_1=0.99, beta_2=0.999, epsilon=1e-4)
  opt.build([var])
  p, m, v = p0.astype(np.float64), np.zeros_like(p0, np.float64), np.ones_like(p0, np.float64)
  for t, (g, lr) in enumerate(zip(grads, lrs), start=1):
    opt.learning_rate = lr
    opt.apply([tf.constant(g)], [var])
    m = 0.99 * m + 0.01 * g
    v = 0.999 * v + 0.001 * g.astype(np.float64)**2
    alpha = lr * np.sqrt(1 - 0.999**t) / (1 - 0.99**t)
    p = p - alpha * m / (np.sqrt(v) + 1e-4)
    np.testing.assert_allclose(var.numpy(), p, rtol=1e-5, atol=1e-7)
  # Keras' Adam from zeros differs: the initial ones matter.
  plain = tf.Variable(p0)
  keras_adam = training.keras.optimizers.Adam(1e-3, beta_1=0.99, epsilon=1e-4)
  keras_adam.apply([tf.constant(grads[0])], [plain])
  other = tf.Variable(p0)
  training.OriginalAdam(1e-3, beta_1=0.99, epsilon=1e-4).apply([tf.constant(grads[0])], [other])
  assert not np.allclose(plain.numpy(), other.numpy())


def test_rounded_learning_rates():
  """1e-4 * round(10 ** (1 - i / 7), 1) in stage i = 0..7."""
  cfg = config.from_flags(procedure='original')
  got = [cfg.learning_rate(e - 1) for e in paper.STAGE_ENDS]  # each stage's last epoch
  want = [1e-4 * round(10**(1 - i / 7), 1) for i in range(8)]
  np.testing.assert_allclose(got, want, rtol=1e-12)
  np.testing.assert_allclose(want, [1e-3, 7.2e-4, 5.2e-4, 3.7e-4, 2.7e-4, 1.9e-4, 1.4e-4, 1e-4])
  assert config.from_flags().learning_rate(1) == pytest.approx(1e-3 * 10**(-1 / 7))


def test_objective_summed_over_the_minibatch():
  """The original code's gradient is that of sum_b L_k(x_b): batch_size times
  the mean's, on the same images and noise."""
  cfg = tiny_config('unused')
  model = training.build_model(cfg)
  x = tf.constant(np.random.default_rng(1).integers(0, 256, (7, 784)), tf.uint8)
  seeds = tf.constant([[3, 0], [3, 1]], tf.int32)
  steps = [trainer_lib.Trainer(model, objectives.make(cfg.objective), sum_over_batch=s)._step(
      x, seeds) for s in (False, True)]
  (v_mean, _, g_mean, _), (v_sum, _, g_sum, _) = steps
  assert float(v_mean) == pytest.approx(float(v_sum))  # the reported loss stays the mean
  for a, b in zip(g_mean, g_sum):
    np.testing.assert_allclose(b.numpy(), 7 * a.numpy(), rtol=1e-4, atol=1e-6)


def test_minibatches_in_a_fixed_order():
  """Minibatch i of every epoch is images [20 i, 20 (i + 1))."""
  batches = [b.numpy().tolist() for b in training.epoch_indices(6, 2, 0, 0, 3, None, shuffle=False)]
  assert batches == [[0, 1], [2, 3], [4, 5]] * 3
  shuffled = [b.numpy().tolist() for b in training.epoch_indices(6, 2, 0, 0, 3, None)]
  assert shuffled[:3] != shuffled[3:6]


def test_the_last_400_training_images_are_held_out():
  cfg = config.from_flags(procedure='original')
  splits = data_lib.make_splits(cfg.data)
  x_all = data_lib.mnist.load().x_train
  assert len(splits.x_train) == 59600 and len(splits.x_valid) == 400
  np.testing.assert_array_equal(splits.x_valid, x_all[-400:])
  np.testing.assert_array_equal(splits.x_train, x_all[:59600])


def test_configuration_and_name():
  original = config.from_flags(procedure='original', objective='vae', k=1)
  assert original.procedure == 'original' and original.optim.beta1 == 0.99
  assert original.data.validation_size == 400
  assert original.sum_over_batch and not original.shuffle
  assert rundir.run_name(original) == 'vae_k1_50_paper_original'
  assert paper.departures(original.to_dict()) == ['original procedure']
  # A flag given explicitly wins over the procedure's default, and is a departure.
  mine = config.from_flags(procedure='original', beta1=0.9, validation_size=0)
  assert (mine.optim.beta1, mine.data.validation_size) == (0.9, 0)
  assert paper.departures(mine.to_dict()) == ['original procedure', 'beta1=0.9',
                                                   '0 held out']
  default = config.from_flags()
  assert default.procedure == 'paper' and default.optim.beta1 == 0.9 and default.shuffle
  assert rundir.run_name(default) == 'iwae_k5_50_paper' and not paper.departures(default.to_dict())
  assert rundir.run_name(config.from_flags(seed=1)) == 'iwae_k5_50_paper_seed1'
  with pytest.raises(config.ConfigError, match='unknown procedure'):
    config.from_flags(procedure='mine')
  # Configurations written before the procedure existed read as the paper's.
  d = default.to_dict()
  del d['procedure']
  assert config.TrainConfig.from_dict(d) == default


@pytest.mark.parametrize('text', ['50,,', ',50', '50,x', ''])
def test_malformed_lists_are_refused(text):
  with pytest.raises(config.ConfigError, match='latents'):
    config.from_flags(latents=text)


def test_a_tiny_original_run_trains_and_resumes_exactly(tmp_path):
  def cfg(name, epochs):
    return dataclasses.replace(tiny_config(tmp_path / name, epochs=epochs), procedure='original')

  straight = training.train(cfg('a', 3))
  assert isinstance(straight.optimizer, training.OriginalAdam)
  training.train(cfg('b', 1))
  resumed = training.train(cfg('b', 3))
  for u, v in zip(straight.trainable_variables, resumed.trainable_variables):
    np.testing.assert_allclose(u.numpy(), v.numpy(), rtol=1e-5, atol=1e-7)

"""Tests of the stochastic layers, the model and its measurements."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from iwae_tf import bounds
from iwae_tf import config
from iwae_tf import metrics
from iwae_tf import objectives
from iwae_tf import trainer as trainer_lib
from helpers import SEED, binary, log_weights, make_model, noise

tfd = tfp.distributions


def make_trainer(model, objective='iwae', k=3):
  return trainer_lib.Trainer(model, objectives.make(config.ObjectiveConfig(objective, k)), seed=1)


@pytest.mark.parametrize('latents', [(50,), (100, 50), (2,), (7, 5, 3)])
def test_distribution_shapes(latents):
  m = make_model(latents)
  x = binary(4, 784)
  q = m.encoders[0](x)
  assert isinstance(q, tfd.Independent)
  assert q.batch_shape == [4] and q.event_shape == [latents[0]]
  hs, log_q = m.encode(x, noise(m, 6, x))
  assert [h.shape for h in hs] == [(6, 4, d) for d in latents]
  assert log_q.shape == (6, 4)
  px = m.decoders[0](hs[0])
  assert px.batch_shape == [6, 4] and px.event_shape == [784]
  for l in range(1, len(latents)):
    p = m.decoders[l](hs[l])
    assert p.batch_shape == [6, 4] and p.event_shape == [latents[l - 1]]
  assert [e.shape for e in noise(m, 6, x)] == [(6, 4, d) for d in latents]
  assert log_weights(m, x, 6).shape == (6, 4)
  assert [mu.shape for mu in m.posterior_means(x, SEED, 3)] == [(4, d) for d in latents]


def test_paper_architectures():
  one = make_model((50,))
  assert [l.units for l in one.encoders[0].mlp.hidden] == [200, 200]
  assert [l.units for l in one.decoders[0].mlp.hidden] == [200, 200]
  two = make_model((100, 50))
  assert [l.units for l in two.encoders[1].mlp.hidden] == [100, 100]
  assert two.decoders[1].loc.units == 100  # p(h1|h2) outputs 100 units
  n_params = sum(int(np.prod(v.shape)) for v in two.trainable_variables)
  # q: 784-200-200-(100+100), 100-100-100-(50+50); p mirrored, x logits 784.
  expect = (784*200 + 200 + 200*200 + 200 + 2*(200*100 + 100) +
            100*100 + 100 + 100*100 + 100 + 2*(100*50 + 50) +
            50*100 + 100 + 100*100 + 100 + 2*(100*100 + 100) +
            100*200 + 200 + 200*200 + 200 + 200*784 + 784)
  assert n_params == expect


def test_output_bias_initialisation():
  bias = np.linspace(-3, 3, 784).astype(np.float32)
  m = make_model((2,), bias=bias)
  np.testing.assert_array_equal(m.decoders[0].logits.bias.numpy(), bias)


def test_log_weights_match_explicit_formula():
  m = make_model((4, 3), data_dim=10, hidden=((8,), (5,)))
  x = binary(2, 10)
  hs, log_q = m.encode(x, noise(m, 5, x))
  q1 = m.encoders[0](x)
  q2 = m.encoders[1](hs[0])
  np.testing.assert_allclose(log_q, q1.log_prob(hs[0]) + q2.log_prob(hs[1]), rtol=1e-5)
  log_p = (tfd.Independent(tfd.Normal(tf.zeros(3), 1.0), 1).log_prob(hs[1]) +
           m.decoders[1](hs[1]).log_prob(hs[0]) +
           tf.reduce_sum(x * tf.math.log_sigmoid(m.decoders[0].logits(m.decoders[0].mlp(hs[0]))) +
                         (1 - x) * tf.math.log_sigmoid(-m.decoders[0].logits(m.decoders[0].mlp(hs[0]))),
                         axis=-1))
  np.testing.assert_allclose(log_weights(m, x, 5), log_p - log_q, rtol=1e-5)


def test_stop_q_params_changes_gradients_not_values():
  m = make_model((3,), data_dim=10, hidden=((8,),))
  x = binary(2, 10)
  with tf.GradientTape(persistent=True) as tape:
    a = tf.reduce_sum(log_weights(m, x, 4))
    b = tf.reduce_sum(log_weights(m, x, 4, stop_q_params=True))
  np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6)
  ga = tape.gradient(a, m.encoder_variables)
  gb = tape.gradient(b, m.encoder_variables)
  assert any(not np.allclose(u, v) for u, v in zip(ga, gb))
  # The decoder does not see q's parameters: identical gradients.
  for u, v in zip(tape.gradient(a, m.decoder_variables), tape.gradient(b, m.decoder_variables)):
    np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)


def quadrature_log_px(m, x):
  """log p(x) of a 1-latent model by dense quadrature over z in [-12, 12]."""
  z = np.linspace(-12, 12, 24001).astype(np.float32)[:, None, None]
  log_joint = m.decoders[0](tf.constant(z)).log_prob(x) + tfd.Normal(0., 1.).log_prob(z[:, :, 0])
  log_joint = log_joint.numpy().astype(np.float64)
  dz = float(z[1, 0, 0] - z[0, 0, 0])
  return np_logsumexp(log_joint, 0) + np.log(dz)


def np_logsumexp(a, axis):
  mx = a.max(axis)
  return mx + np.log(np.exp(a - np.expand_dims(mx, axis)).sum(axis))


def test_large_k_estimate_matches_quadrature_and_bounds_increase():
  m = make_model((1,), hidden=((16,),), data_dim=12)
  # q(z|x) = N(0, 1.5^2), wider than the prior and so than every posterior:
  # the weights are bounded and the estimator's error is well controlled.
  enc = m.encoders[0]
  for v in (enc.loc.kernel, enc.loc.bias, enc.log_scale.kernel):
    v.assign(tf.zeros_like(v))
  enc.log_scale.bias.assign([np.log(1.5)])
  x = binary(8, 12, seed=5).numpy()
  truth = quadrature_log_px(m, tf.constant(x))
  est = metrics.Estimator(m, batch_size=8, chunk=1000)
  # Monte Carlo standard error here is ~0.015 at K = 5000 and ~0.003 at 1e5.
  np.testing.assert_allclose(est.log_likelihood(x, 5000, seed=1), truth, atol=0.06)
  np.testing.assert_allclose(est.log_likelihood(x, 100000, seed=1), truth, atol=0.012)
  means = [est.log_likelihood(np.repeat(x, 200, 0), k, seed=2).mean() for k in (1, 5, 50)]
  # L_1 < L_5 < L_50 <= log p(x) (up to the replicates' noise, ~0.003).
  assert means[0] < means[1] < means[2] < truth.mean() + 0.01, (means, truth.mean())
  assert truth.mean() - means[0] > 0.1


def test_chunked_estimate_equals_unchunked_on_the_same_samples():
  m = make_model((3,), hidden=((8,),), data_dim=10)
  x = binary(4, 10).numpy()
  est = metrics.Estimator(m, batch_size=4, chunk=7, jit_compile=False)
  got = est.log_likelihood(x, 30, seed=9)
  # The same samples drawn explicitly: chunks 0..3 of 7, then a rest of 2.
  seed = tf.random.experimental.stateless_fold_in(tf.constant([9, 0], tf.int32), 0)
  log_w = tf.concat(
      [log_weights(m, tf.constant(x), 7 if c < 4 else 2,
                   tf.random.experimental.stateless_fold_in(seed, c)) for c in range(5)], 0)
  np.testing.assert_allclose(got, bounds.iwae_bound(log_w).numpy(), rtol=1e-5)
  # And XLA-compiled with another chunk size: same estimator up to Monte Carlo noise.
  other = metrics.Estimator(m, batch_size=2, chunk=30).log_likelihood(x, 30, seed=9)
  assert np.all(np.isfinite(other))


def test_active_units_on_constructed_encoder():
  m = make_model((6,), hidden=((8,),), data_dim=10)
  enc = m.encoders[0]
  kernel = np.zeros((8, 6), np.float32)
  kernel[:, 0] = 3.0   # varies strongly with x: active
  kernel[:, 1] = 1e-3  # varies, but Var < 1e-2: inactive
  enc.loc.kernel.assign(kernel)
  enc.loc.bias.assign(np.arange(6, dtype=np.float32))  # constants never count
  x = binary(300, 10).numpy()
  variances = metrics.posterior_mean_variances(m, x)
  assert metrics.active_units(variances) == [1]
  assert variances[0][0] > 1e-2 and variances[0][1] < 1e-2
  np.testing.assert_allclose(variances[0][2:], 0.0, atol=1e-10)


def test_iwae_and_vae_objectives():
  m = make_model((3,), hidden=((8,),), data_dim=10)
  x = binary(5, 10)
  log_w = log_weights(m, x, 4)
  iw = objectives.IWAE(4)(m, x, noise(m, 4, x))
  va = objectives.VAE(4)(m, x, noise(m, 4, x))
  np.testing.assert_allclose(iw.value, bounds.iwae_bound(log_w).numpy().mean(), rtol=1e-5)
  np.testing.assert_allclose(va.value, log_w.numpy().mean(), rtol=1e-5)
  np.testing.assert_allclose(va.bound, iw.bound, rtol=1e-6)  # the reported bound is L_k


def test_gaussian_sample_moments_and_reparameterisation():
  from iwae_tf import layers
  loc, scale = tf.Variable([[1.0, -2.0]]), tf.Variable([[0.5, 3.0]])
  with tf.GradientTape() as tape:
    d = tfd.Independent(tfd.Normal(loc, scale), 1)
    z = layers.reparameterize(d, layers.standard_normal_noise([100000, 1, 2], SEED))
    s = tf.reduce_mean(z)
  assert z.shape == (100000, 1, 2)
  np.testing.assert_allclose(z.numpy().mean((0, 1)), [1.0, -2.0], atol=0.03)
  np.testing.assert_allclose(z.numpy().std((0, 1)), [0.5, 3.0], rtol=0.02)
  g_loc, g_scale = tape.gradient(s, [loc, scale])
  np.testing.assert_allclose(g_loc.numpy(), [[0.5, 0.5]], rtol=2e-3)  # d mean(z) / d loc
  eps = (z.numpy() - [1.0, -2.0]) / [0.5, 3.0]
  np.testing.assert_allclose(g_scale.numpy(), eps.mean((0, 1))[None] / 2, rtol=1e-4, atol=1e-7)


def test_the_model_is_a_function_of_weights_images_and_noise():
  """The pure model holds no random state: the same noise gives the same
  log-weights, another seed's noise other ones, and the noise of a block of
  images is their rows of a bigger batch's noise."""
  m = make_model((4, 3), data_dim=10, hidden=((8,), (5,)))
  assert not any(isinstance(v, tf.random.Generator) for v in vars(m).values())
  x = binary(6, 10)
  eps = noise(m, 5, x)
  np.testing.assert_array_equal(m.log_weights(x, eps), m.log_weights(x, eps))
  assert not np.allclose(m.log_weights(x, eps), log_weights(m, x, 5, SEED + 1))
  rows = [e[:, 2:4] for e in eps]
  np.testing.assert_allclose(m.log_weights(x[2:4], rows), m.log_weights(x, eps)[:, 2:4],
                             rtol=1e-6)


def test_index_batches_train_as_the_images_they_name():
  """``train_step`` on indices into ``set_train_images`` equals ``train_step``
  on the gathered uint8 images, for one step and for stacked steps, and the
  step's randomness depends on the optimizer's step count only."""
  images = np.random.default_rng(0).integers(0, 256, (12, 784), dtype=np.uint8)
  idx = np.array([[3, 1, 4, 0], [5, 9, 2, 6]], np.int32)
  results = []
  for feed in ('indices', 'images'):
    keras.utils.set_random_seed(0)
    m = make_trainer(make_model((3,), hidden=((8,),)))
    m.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=True)
    m.optimizer.build(m.trainable_variables)
    m.set_train_images(images)
    for batch in (idx[0], idx):  # one step, then two stacked steps
      data = batch if feed == 'indices' else images[batch]
      m.train_step(tf.constant(data))
    results.append([v.numpy() for v in m.trainable_variables])
    assert int(m.optimizer.iterations.numpy()) == 3
  for a, b in zip(*results):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  keras.utils.set_random_seed(0)
  initial = [v.numpy() for v in make_model((3,), hidden=((8,),)).trainable_variables]
  assert all(not np.allclose(a, b) for a, b in zip(results[0], initial))


@pytest.mark.parametrize('jit', [False, True])
def test_dynamic_binarisation_draws_bernoulli_of_the_grey_level(jit):
  """Each pixel is 1 with probability grey/255 (0 never, 255 always), with
  TensorFlow's Philox kernels and with XLA's ThreeFry (``layers.noise_alg``)."""
  m = make_trainer(make_model((3,), hidden=((8,),), data_dim=4))
  grey = tf.constant(np.tile([[0, 64, 191, 255]], (50000, 1)), tf.uint8)
  x = tf.function(m.binarize, jit_compile=jit)(grey, SEED).numpy()
  assert set(np.unique(x)) <= {0.0, 1.0}
  p = np.array([0, 64, 191, 255]) / 255
  np.testing.assert_allclose(x.mean(0), p, atol=0.006)  # 3 sd
  # Another step's seed: an independent draw (differs w.p. 2p(1-p)).
  again = tf.function(m.binarize, jit_compile=jit)(grey, SEED + 1).numpy()
  np.testing.assert_allclose((x != again).mean(0), 2 * p * (1 - p), atol=0.007)

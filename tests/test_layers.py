"""Stochastic layers: shapes and the Bernoulli log-probability."""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from iwae_tf import layers

tfd = tfp.distributions


def test_bernoulli_log_prob_matches_tfp_at_extreme_logits():
  logits = tf.constant(np.concatenate([np.linspace(-80.0, 80.0, 41),
                                       np.random.default_rng(0).normal(0.0, 5.0, 59)]),
                       tf.float32)
  for x in (tf.zeros_like(logits), tf.ones_like(logits)):
    ours = layers.BernoulliLogits(logits=logits, dtype=tf.float32).log_prob(x)
    ref = tfd.Bernoulli(logits=logits, dtype=tf.float32).log_prob(x)
    assert np.all(np.isfinite(ours))
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=2e-6)
  # Exact values: log sigmoid(s) for x = 1, log sigmoid(-s) for x = 0.
  s = np.array([-3.0, 0.0, 2.0], np.float32)
  np.testing.assert_allclose(layers.BernoulliLogits(logits=s).log_prob([1, 0, 1]),
                             [-np.log1p(np.exp(3.0)), -np.log(2.0), -np.log1p(np.exp(-2.0))],
                             rtol=1e-6)


def test_bernoulli_gradient_matches_tfp():
  logits = tf.Variable(np.random.default_rng(1).normal(0.0, 4.0, (3, 7)).astype(np.float32))
  x = tf.constant(np.random.default_rng(2).random((3, 7)) < 0.5, tf.float32)
  grads = []
  for dist in (layers.BernoulliLogits, tfd.Bernoulli):
    with tf.GradientTape() as tape:
      lp = tf.reduce_sum(dist(logits=logits, dtype=tf.float32).log_prob(x))
    grads.append(tape.gradient(lp, logits))
  np.testing.assert_allclose(grads[0], grads[1], rtol=1e-5, atol=1e-7)


def test_layers_return_independent_distributions_over_leading_axes():
  h = tf.zeros([5, 4, 3])
  q = layers.GaussianLayer((8,), 2)(h)
  p = layers.BernoulliLayer((8,), 6)(h)
  assert isinstance(q, tfd.Independent) and isinstance(p, tfd.Independent)
  assert q.batch_shape == (5, 4) and q.event_shape == (2,)
  assert p.batch_shape == (5, 4) and p.event_shape == (6,)
  eps = layers.standard_normal_noise([7, 5, 4, 2], tf.constant([1, 2]))
  assert layers.reparameterize(q, eps).shape == (7, 5, 4, 2)


def test_noise_generator_is_threefry_exactly_under_xla():
  seen = []

  def trace():
    seen.append(layers.noise_alg())
    return tf.while_loop(lambda i: i < 1, lambda i: (seen.append(layers.noise_alg()) or i + 1,),
                         (tf.constant(0),))

  seen.append(layers.noise_alg())  # eager
  tf.function(trace)()
  tf.function(trace, jit_compile=True)()
  # Philox where TensorFlow's kernels run (they have no ThreeFry), ThreeFry
  # in XLA programs, including loops inside them.
  assert seen == ['philox', 'philox', 'philox', 'threefry', 'threefry']


def test_gaussian_sample_under_xla_uses_threefry_with_the_right_moments():
  loc, scale = tf.constant([[1.0, -2.0]]), tf.constant([[0.5, 3.0]])
  seed = tf.constant([3, 4])
  d = tfd.Independent(tfd.Normal(loc, scale), 1)

  @tf.function(jit_compile=True)
  def draw():
    eps = tf.random.stateless_normal([100000, 1, 2], seed, alg='threefry')
    return layers.reparameterize(d, layers.standard_normal_noise([100000, 1, 2], seed)), \
        loc + scale * eps

  z, expected = draw()
  np.testing.assert_array_equal(z.numpy(), expected.numpy())
  np.testing.assert_allclose(z.numpy().mean((0, 1)), [1.0, -2.0], atol=0.03)
  np.testing.assert_allclose(z.numpy().std((0, 1)), [0.5, 3.0], rtol=0.02)
  eager = layers.reparameterize(d, layers.standard_normal_noise([100000, 1, 2], seed))
  assert not np.allclose(z.numpy(), eager.numpy())  # eager: Philox

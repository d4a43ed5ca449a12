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
  assert layers.sample(q, tf.constant([1, 2]), [7]).shape == (7, 5, 4, 2)

"""Tests of iwae_tf.bounds against float64 numpy references and closed forms."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from iwae_tf import bounds

tfd = tfp.distributions


def np_log_mean_exp(a, axis=0):
  a = np.asarray(a, np.float64)
  m = a.max(axis=axis, keepdims=True)
  return (m + np.log(np.mean(np.exp(a - m), axis=axis, keepdims=True))).squeeze(axis)


@pytest.mark.parametrize('k', [1, 5, 50])
def test_iwae_bound_matches_float64_reference(k):
  rng = np.random.default_rng(k)
  log_w = rng.normal(-90.0, 5.0, size=(k, 7))
  got = bounds.iwae_bound(tf.constant(log_w)).numpy()
  np.testing.assert_allclose(got, np_log_mean_exp(log_w), rtol=0, atol=1e-10)
  # And in float32, the precision training uses.
  got32 = bounds.iwae_bound(tf.constant(log_w, tf.float32)).numpy()
  np.testing.assert_allclose(got32, np_log_mean_exp(log_w), rtol=1e-6)


def test_l1_is_the_elbo():
  log_w = tf.random.stateless_normal([1, 11], seed=[1, 2])
  np.testing.assert_array_equal(bounds.iwae_bound(log_w).numpy(), bounds.elbo(log_w).numpy())


def test_elbo_is_mean_and_below_iwae():
  log_w = tf.random.stateless_normal([9, 13], seed=[3, 4], stddev=3.0, dtype=tf.float64)
  np.testing.assert_allclose(bounds.elbo(log_w).numpy(), log_w.numpy().mean(0))
  # Jensen: mean(log w) <= log mean(w), for every example.
  assert np.all(bounds.elbo(log_w).numpy() <= bounds.iwae_bound(log_w).numpy())


@pytest.mark.parametrize('scale', [1e4, -1e4])
def test_extreme_log_weights_are_finite(scale):
  log_w = tf.constant([[scale, scale - 1.0, scale + 3.0], [scale, scale, scale]], tf.float32)
  got = bounds.iwae_bound(log_w).numpy()
  assert np.all(np.isfinite(got))
  np.testing.assert_allclose(got, np_log_mean_exp(log_w.numpy()), rtol=1e-6)
  w = bounds.normalized_weights(log_w).numpy()
  assert np.all(np.isfinite(w))
  np.testing.assert_allclose(w.sum(0), 1.0, rtol=1e-6)


def test_mixed_extremes_keep_the_dominant_weight():
  log_w = tf.constant([[1e4], [-1e4]], tf.float32)
  np.testing.assert_allclose(bounds.iwae_bound(log_w).numpy(), [1e4 - np.log(2)], rtol=1e-7)
  np.testing.assert_allclose(bounds.normalized_weights(log_w).numpy()[:, 0], [1.0, 0.0])


def test_gradients_finite_at_extremes():
  log_w = tf.Variable([[1e4, -1e4], [-1e4, 1e4]], dtype=tf.float32)
  with tf.GradientTape() as tape:
    b = tf.reduce_sum(bounds.iwae_bound(log_w))
  g = tape.gradient(b, log_w).numpy()
  # d L_k / d log w_i = normalised weight.
  np.testing.assert_allclose(g, [[1.0, 0.0], [0.0, 1.0]], atol=1e-7)


def test_split_groups_layout():
  log_w = tf.reshape(tf.range(12.0), [6, 2])
  g = bounds.split_groups(log_w, 3).numpy()
  assert g.shape == (3, 2, 2)
  np.testing.assert_array_equal(g[1], [[4, 5], [6, 7]])


def _linear_gaussian_log_weights(x, k, q_loc_shift, q_scale, seed):
  """z ~ N(0,1), x|z ~ N(z,1): p(x) = N(0, 2), posterior N(x/2, 1/2)."""
  one = tf.ones_like(x)
  q = tfd.Normal(x / 2.0 + q_loc_shift, q_scale * one)
  z = q.sample(k, seed=seed)
  log_p = tfd.Normal(0.0 * one, one).log_prob(z) + tfd.Normal(z, one).log_prob(x)
  return log_p - q.log_prob(z)


def test_exact_posterior_gives_exact_log_likelihood_for_every_k():
  x = tf.constant(np.linspace(-3, 3, 7), tf.float64)
  truth = tfd.Normal(tf.constant(0.0, tf.float64), np.sqrt(2.0)).log_prob(x).numpy()
  for k in (1, 5, 50):
    log_w = _linear_gaussian_log_weights(x, k, 0.0, np.sqrt(0.5), seed=[k, 0])
    np.testing.assert_allclose(bounds.iwae_bound(log_w).numpy(), truth, atol=1e-10)


def test_bound_increases_towards_log_likelihood_with_k():
  x = tf.constant([0.7], tf.float64)
  truth = tfd.Normal(tf.constant(0.0, tf.float64), np.sqrt(2.0)).log_prob(x).numpy()[0]
  means = []
  for k in (1, 5, 50, 500):
    # Average over many independent replicates: L_k is a bound in expectation.
    log_w = _linear_gaussian_log_weights(tf.fill([4000], x[0]), k, 0.8, 1.0, seed=[k, 1])
    means.append(bounds.iwae_bound(log_w).numpy().mean())
  assert all(a < b for a, b in zip(means, means[1:])), means
  assert means[-1] < truth
  assert truth - means[-1] < 0.01
  assert truth - means[0] > 0.2  # the mismatched q makes the ELBO loose

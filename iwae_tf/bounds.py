"""Pure numerics of importance-weighted bounds.

Axis convention (used everywhere in this package): importance samples come
first, then the batch, then event dimensions: ``[k, batch, ...]``. A tensor of
log-weights therefore has shape ``[k, batch]``.

For an observation ``x`` and ``k`` samples ``z_i ~ q(z|x)`` the log-weights are
``log w_i = log p(x, z_i) - log q(z_i|x)``. The importance-weighted bound of
Burda, Grosse & Salakhutdinov (2016) is

    L_k(x) = log (1/k) sum_i w_i = logsumexp_i(log w_i) - log k,

which equals the ELBO ``log w_1`` for ``k = 1``, satisfies
``L_1 <= L_k <= L_m <= log p(x)`` in expectation for ``k <= m``, and tends to
``log p(x)`` as ``k -> inf``. The "VAE with k samples" baseline averages
``log w_i`` over the samples instead: same cost, the looser ELBO.

Everything is computed from log-weights with log-sum-exp, never by
exponentiating and adding an epsilon inside a log, so log-weights of any
magnitude (e.g. +-1e4) are handled without overflow.

The normalised importance weights ``softmax_i(log w_i)`` define the
importance-weighted posterior q_IW (Cremer, Morris & Duvenaud, 2017): draw
``z_1..z_k ~ q``, then return ``z_j`` with ``j ~ Cat(softmax(log w))``.

This module has no flags, no summaries and no state.
"""

import tensorflow as tf


def log_mean_exp(log_w, axis=0):
  """Stable ``log mean exp`` along ``axis``.

  Args:
    log_w: float tensor, e.g. ``[k, batch]`` log-weights.
    axis: the sample axis to reduce.

  Returns:
    ``log_w`` reduced along ``axis``.
  """
  log_w = tf.convert_to_tensor(log_w)
  n = tf.cast(tf.shape(log_w)[axis], log_w.dtype)
  return tf.reduce_logsumexp(log_w, axis=axis) - tf.math.log(n)


def iwae_bound(log_w):
  """The importance-weighted bound L_k per example.

  Args:
    log_w: ``[k, batch]`` log-weights.

  Returns:
    ``[batch]`` values of ``log (1/k) sum_i w_i``.
  """
  return log_mean_exp(log_w, axis=0)


def elbo(log_w):
  """The k-sample ELBO (the "VAE with k samples" objective) per example.

  Args:
    log_w: ``[k, batch]`` log-weights.

  Returns:
    ``[batch]`` values of ``(1/k) sum_i log w_i``. Equals ``iwae_bound`` at k=1.
  """
  return tf.reduce_mean(log_w, axis=0)


def normalized_weights(log_w):
  """Normalised importance weights ``softmax`` over the sample axis.

  Args:
    log_w: ``[k, batch]`` log-weights.

  Returns:
    ``[k, batch]`` weights, non-negative, summing to one over axis 0.
  """
  return tf.nn.softmax(log_w, axis=0)


def split_groups(log_w, num_groups):
  """Reshapes ``[m*k, batch]`` log-weights to ``[m, k, batch]`` groups.

  Args:
    log_w: ``[m*k, batch]`` log-weights.
    num_groups: m.

  Returns:
    ``[m, k, batch]`` tensor; group g holds samples ``g*k .. g*k+k-1``.
  """
  shape = tf.shape(log_w)
  return tf.reshape(log_w, tf.concat([[num_groups, shape[0] // num_groups],
                                      shape[1:]], axis=0))


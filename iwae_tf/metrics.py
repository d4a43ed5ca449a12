"""Measurements of a trained model: log-likelihood estimates and active units.

Log-likelihood. For ``K`` importance samples,
``log p(x) ~= L_K(x) = log (1/K) sum_i w_i`` (Burda et al. 2016 use
``K = 5000`` for the test NLL). The samples are drawn in chunks of ``chunk``
samples; each chunk's ``logsumexp`` is combined with the running total by
``logaddexp``, so memory is bounded by ``chunk x batch`` whatever ``K`` is,
and the result equals the unchunked estimate up to float rounding. The same
function gives the bounds ``L_1``, ``L_5``, ``L_50``.

Active units (Burda et al. 2016, section 5.2): unit ``u`` of a stochastic
layer is active when ``A_u = Cov_x(E_{q(u|x)}[u]) > 1e-2``. For deeper
layers the posterior mean is averaged over samples of the layers below.
"""

import numpy as np
import tensorflow as tf

ACTIVE_THRESHOLD = 1e-2


def _fold(seed, i):
  return tf.random.experimental.stateless_fold_in(seed, i)


class Estimator:
  """Compiled, chunked ``L_K`` estimates for one model.

  Args:
    model: an ``IWAEModel``.
    batch_size: images per compiled call.
    chunk: importance samples per chunk (memory ~ chunk * batch_size).
    jit_compile: compile with XLA.
  """

  def __init__(self, model, batch_size=100, chunk=100, jit_compile=True):
    self.model = model
    self.batch_size = batch_size
    self.chunk = chunk
    self._fn = tf.function(self._batch_estimate, jit_compile=jit_compile,
                           reduce_retracing=True)

  def _batch_estimate(self, x, seed, k, chunk):
    """``[batch]`` log-mean-exp over ``k`` samples drawn ``chunk`` at a time."""
    num_full = k // chunk
    rest = k - num_full * chunk
    total = tf.fill(tf.shape(x)[:1], -np.inf)

    batch = tf.shape(x)[0]

    def body(i, total):
      log_w = self.model.log_weights(x, self.model.draw_noise(chunk, batch, _fold(seed, i)))
      return i + 1, tf.experimental.numpy.logaddexp(
          total, tf.reduce_logsumexp(log_w, axis=0))

    _, total = tf.while_loop(lambda i, _: i < num_full, body,
                             (tf.constant(0), total))
    if rest:
      log_w = self.model.log_weights(x, self.model.draw_noise(rest, batch, _fold(seed, num_full)))
      total = tf.experimental.numpy.logaddexp(total, tf.reduce_logsumexp(log_w, axis=0))
    return total - tf.math.log(tf.cast(k, total.dtype))

  def log_likelihood(self, x, k, seed=0, progress=None):
    """Per-example ``log (1/k) sum_i w_i``.

    Args:
      x: ``[N, D]`` binary float array.
      k: importance samples per image.
      seed: integer seed; the estimate is a deterministic function of it.
      progress: called as ``progress(images done, images)`` after each batch.

    Returns:
      ``[N]`` float64 numpy array.
    """
    x = np.asarray(x, np.float32)
    chunk = min(self.chunk, k)
    out = []
    for b, start in enumerate(range(0, len(x), self.batch_size)):
      xb = tf.constant(x[start:start + self.batch_size])
      s = _fold(tf.constant([seed, 0], tf.int32), b)
      # k and chunk are python ints: one trace per distinct (k, chunk, shape).
      out.append(self._fn(xb, s, k, chunk).numpy())
      if progress is not None:
        progress(min(start + self.batch_size, len(x)), len(x))
    return np.concatenate(out).astype(np.float64)


def posterior_mean_variances(model, x, seed=0, num_samples=10, batch_size=500):
  """Per stochastic layer, ``Var_x(E_q[h_l | x])`` for each unit.

  Args:
    model: an ``IWAEModel``.
    x: ``[N, D]`` binary float array.
    seed: integer seed for deeper layers' Monte Carlo means.
    num_samples: samples of lower layers used for deeper layers' means.

  Returns:
    list of ``[d_l]`` numpy arrays.
  """
  means = None
  for b, start in enumerate(range(0, len(x), batch_size)):
    xb = tf.constant(np.asarray(x[start:start + batch_size], np.float32))
    s = _fold(tf.constant([seed, 1], tf.int32), b)
    batch_means = [m.numpy() for m in model.posterior_means(xb, s, num_samples)]
    means = ([[m] for m in batch_means] if means is None
             else [acc + [m] for acc, m in zip(means, batch_means)])
  return [np.concatenate(m).astype(np.float64).var(axis=0) for m in means]


def active_units(variances, threshold=ACTIVE_THRESHOLD):
  """Number of active units per layer from ``posterior_mean_variances``."""
  return [int(np.sum(v > threshold)) for v in variances]


def gradient_snr(model, objective, x, num_draws=100, seed=0, jit_compile=True):
  """Signal-to-noise ratio of an objective's gradient estimator, per parameter.

  For each scalar parameter, ``SNR = |mean(g)| / std(g)`` over ``num_draws``
  independent estimates on the same images ``x`` (Rainforth et al. 2018,
  section 3), then averaged over the encoder's and over the decoder's
  parameters (parameters whose gradient never varies are left out).

  Args:
    model: an ``IWAEModel``.
    objective: an ``objectives.Objective``: the estimator measured.
    x: ``[batch, D]`` binary images (one fixed minibatch).
    num_draws: gradient estimates.
    seed: integer seed.

  Returns:
    dict with ``encoder`` and ``decoder`` mean SNRs.
  """
  enc_paths = {v.path for v in model.encoder_variables}
  x = tf.constant(np.asarray(x, np.float32))

  def flat_grads(s):
    noise = model.draw_noise(objective.samples, tf.shape(x)[0], s)
    _, grads, variables = objective.gradients(model, x, noise)
    enc = [tf.reshape(g, [-1]) for g, v in zip(grads, variables) if v.path in enc_paths]
    dec = [tf.reshape(g, [-1]) for g, v in zip(grads, variables) if v.path not in enc_paths]
    return tf.concat(enc, 0), tf.concat(dec, 0)

  fn = tf.function(flat_grads, jit_compile=jit_compile)
  draws = [fn(_fold(tf.constant([seed, 2], tf.int32), i)) for i in range(num_draws)]
  out = {}
  for name, index in (('encoder', 0), ('decoder', 1)):
    g = np.stack([d[index].numpy() for d in draws]).astype(np.float64)
    std = g.std(0)
    keep = std > 0
    out[name] = float(np.mean(np.abs(g.mean(0)[keep]) / std[keep]))
  return out

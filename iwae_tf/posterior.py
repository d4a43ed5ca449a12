"""The importance-weighted posterior q_IW and posterior densities on a grid.

q_IW (Cremer, Morris & Duvenaud 2017; Burda et al. 2016's Algorithm 1 read as
a sampler): draw ``z_1..z_k ~ q(z|x)``, compute normalised weights
``w~_i = softmax_i(log w_i)``, return ``z_j`` with ``j ~ Cat(w~)``. For
``k = 1`` this is ``q``; as ``k`` grows its density approaches the true
posterior ``p(z|x)``, and L_k is the ELBO of q_IW's implicit density.

For a model with 2-D latents the true posterior is computed on a grid:
``p(z|x) ~= exp(log p(x, z)) / sum_grid exp(log p(x, z')) dA``, which the
figure compares with ``q`` and with histograms of q_IW samples.
"""

import numpy as np
import tensorflow as tf


def resample(samples, log_w, seed):
  """Picks one of ``k`` samples per image with probability ``softmax(log w)``.

  Args:
    samples: ``[k, batch, ...]``.
    log_w: ``[k, batch]`` log-weights.
    seed: stateless seed ``[2]``.

  Returns:
    ``[batch, ...]`` the chosen samples.
  """
  j = tf.random.stateless_categorical(tf.transpose(log_w), 1, seed)[:, 0]
  return tf.gather(tf.transpose(samples, tf.concat([[1, 0], tf.range(2, tf.rank(samples))], 0)),
                   j, batch_dims=1)


def importance_resample(model, x, k, seed):
  """Draws one q_IW sample of every latent layer per image.

  Args:
    model: an ``IWAEModel``.
    x: ``[batch, D]`` binary images.
    k: proposals per draw (k = 1 gives plain q samples).
    seed: stateless seed ``[2]``.

  Returns:
    list, bottom layer first, of ``[batch, d_l]`` samples of one joint path.
  """
  seeds = tf.random.experimental.stateless_split(seed, 2)
  hs, log_q = model.encode(x, model.draw_noise(k, tf.shape(x)[0], seeds[0]))
  log_w = model.log_joint(x, hs) - log_q
  # One index per image, shared by all layers: the whole path is resampled.
  stacked = tf.concat(hs, axis=-1)
  chosen = resample(stacked, log_w, seeds[1])
  return tf.split(chosen, [h.shape[-1] for h in hs], axis=-1)


def reweighting_gain(model, x, ks, seed=0, batch_size=500):
  """Mean ``log p(x|z)`` of plain q samples versus q_IW samples.

  Args:
    model: an ``IWAEModel``.
    x: ``[N, D]`` binary images.
    ks: values of k; k = 1 is the plain q sample.

  Returns:
    dict ``k -> (mean log p(x|z) over images, fraction of images whose q_IW
    sample reconstructs better than a plain q sample)``.
  """
  per_k = {}
  for k in ks:
    values = []
    for b, start in enumerate(range(0, len(x), batch_size)):
      xb = tf.constant(x[start:start + batch_size], tf.float32)
      s = tf.random.experimental.stateless_fold_in(tf.constant([seed, k], tf.int32), b)
      z = importance_resample(model, xb, k, s)[0]
      values.append(model.decoders[0](z).log_prob(xb).numpy())
    per_k[k] = np.concatenate(values)
  return {k: (float(v.mean()), float(np.mean(v > per_k[ks[0]]))) for k, v in per_k.items()}


def grid(extent, size):
  """Cell centres of a ``size x size`` grid, and the cell area.

  Args:
    extent: ``(lo, hi)`` for both axes, or ``(x_lo, x_hi, y_lo, y_hi)``.

  Returns:
    ``[size*size, 2]`` points (x varies fastest) and the cell area.
  """
  x_lo, x_hi, y_lo, y_hi = tuple(extent) * (2 if len(extent) == 2 else 1)
  xe, ye = np.linspace(x_lo, x_hi, size + 1), np.linspace(y_lo, y_hi, size + 1)
  zx, zy = np.meshgrid((xe[:-1] + xe[1:]) / 2, (ye[:-1] + ye[1:]) / 2, indexing='xy')
  area = (xe[1] - xe[0]) * (ye[1] - ye[0])
  return np.stack([zx.ravel(), zy.ravel()], -1).astype(np.float32), area


def focus_extent(model, x, coarse=(-8.0, 8.0), size=200, width=4.0):
  """An extent ``(x_lo, x_hi, y_lo, y_hi)`` covering q(z|x) and p(z|x).

  Both within ``width`` standard deviations, with equal sides.

  The true posterior's mean and spread are read off a coarse grid first, so
  that the plotted grid is fine where the mass is.
  """
  points, area = grid(coarse, size)
  p = true_posterior(model, x, points, area)
  p_mean = p @ points
  p_std = np.sqrt(np.maximum(p @ (points - p_mean)**2, ((coarse[1] - coarse[0]) / size)**2))
  q = model.encoders[0](tf.constant(x[None], tf.float32)).distribution
  q_mean, q_std = q.loc.numpy()[0], q.scale.numpy()[0]
  lo = np.minimum(p_mean - width * p_std, q_mean - width * q_std)
  hi = np.maximum(p_mean + width * p_std, q_mean + width * q_std)
  centre, half = (lo + hi) / 2, float(np.max(hi - lo)) / 2  # square cells
  return (float(centre[0] - half), float(centre[0] + half),
          float(centre[1] - half), float(centre[1] + half))


def true_posterior(model, x, points, area):
  """``[size*size]`` probabilities of each grid cell under p(z|x) (1-layer, 2-D)."""
  z = tf.constant(points)[:, None, :]                            # [G, 1, 2]
  log_joint = model.log_joint(tf.constant(x[None], tf.float32), [z])[:, 0].numpy()
  return _normalise(log_joint.astype(np.float64) + np.log(area))


def q_posterior(model, x, points, area):
  """``[size*size]`` probabilities of each grid cell under q(z|x)."""
  q = model.encoders[0](tf.constant(x[None], tf.float32))
  log_q = q.log_prob(tf.constant(points)[:, None, :])[:, 0].numpy()
  return _normalise(log_q.astype(np.float64) + np.log(area))


def q_iw_histogram(model, x, k, extent, size, num_draws=20000, seed=0, batch_size=1000):
  """``[size*size]`` cell probabilities of q_IW from ``num_draws`` samples.

  Draws are made ``batch_size`` at a time (memory ~ k * batch_size * D).
  Mass outside the grid is left out.
  """
  xb = tf.constant(np.repeat(x[None], batch_size, 0), tf.float32)
  hist = np.zeros((size, size))
  for b, start in enumerate(range(0, num_draws, batch_size)):
    n = min(batch_size, num_draws - start)
    s = tf.random.experimental.stateless_fold_in(tf.constant([seed, k], tf.int32), b)
    z = importance_resample(model, xb[:n], k, s)[0].numpy()
    x_lo, x_hi, y_lo, y_hi = tuple(extent) * (2 if len(extent) == 2 else 1)
    hist += np.histogram2d(z[:, 1], z[:, 0], bins=size, range=[(y_lo, y_hi), (x_lo, x_hi)])[0]
  return hist.ravel() / num_draws


def total_variation(p, q):
  """Total variation distance between two discrete distributions on a grid."""
  return 0.5 * float(np.abs(np.asarray(p) - np.asarray(q)).sum())


def _normalise(log_p):
  return np.exp(log_p - tf.reduce_logsumexp(log_p).numpy())

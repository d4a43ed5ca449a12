"""Training objectives and gradient estimators: log-weights in, surrogates out.

An objective scores latent paths of the model, drawn from given noise, and
returns an ``ObjectiveOutput``; ``Objective.gradients`` turns it into the
estimator's gradients:

* ``surrogate``: scalar whose gradient w.r.t. the decoder (and w.r.t. the
  encoder unless ``split_gradients``) is the gradient estimator;
* ``encoder_surrogate``: when ``split_gradients``, the scalar whose gradient
  w.r.t. the encoder is used instead;
* ``value``: the objective being optimised, averaged over the batch, logged
  as ``-loss``;
* ``bound``: ``[batch]`` the importance-weighted bound ``L_k`` of the same
  samples (averaged over groups where there are several), reported whatever
  the estimator.

Notation: ``k`` samples per group, ``M`` groups; log-weights ``[M*k, batch]``
split into ``[M, k, batch]``; ``w~`` the normalised weights within a group.

Objectives (Burda et al. 2016):
  * ``vae``: the k-sample ELBO ``(1/k) sum_i log w_i``.
  * ``iwae``: ``L_k = log (1/k) sum_i w_i``.

Estimators of the IWAE gradient (``--estimator``):
  * ``iwae``: the standard reparameterised gradient of ``L_k``.
  * ``stl``: "sticking the landing" (Roeder, Wu & Duvenaud 2017): ``log q`` is
    evaluated with its parameters' gradients stopped, which removes the
    score-function term ``-d/dphi log q_phi(z)`` at fixed ``z`` and keeps the
    path derivative through ``z``. (Biased for k > 1, Tucker et al. 2018.)
  * ``dreg``: doubly reparameterised (Tucker, Lawson, Gu & Maddison 2018):
    encoder surrogate ``sum_i stop(w~_i^2) log w_i`` with q's parameters
    stopped inside ``log w_i``; decoder gets the IWAE gradient
    ``sum_i w~_i grad log w_i``. Unbiased for the IWAE gradient.
  * ``miwae``: (Rainforth et al. 2018) the average of M independent ``L_k``.
  * ``ciwae``: ``beta * ELBO + (1 - beta) * L_k`` on the same k samples.
  * ``piwae``: decoder trained on ``L_{M*k}`` over all samples, encoder on the
    MIWAE bound of the same samples in M groups of k.
"""

import dataclasses
from typing import Optional

import tensorflow as tf

from iwae_tf import bounds


@dataclasses.dataclass
class ObjectiveOutput:
  surrogate: tf.Tensor
  value: tf.Tensor
  bound: tf.Tensor
  encoder_surrogate: Optional[tf.Tensor] = None


class Objective:
  """Base class. Subclasses implement ``output(log_w, bound)``.

  Attributes:
    k: importance samples per group (the bound reported is L_k).
    groups: M, groups of k samples drawn per image.
    split_gradients: whether encoder and decoder use different surrogates.
    stop_q_params: whether log q is evaluated with stopped parameters.
  """
  split_gradients = False
  stop_q_params = False

  def __init__(self, k, groups=1, beta=0.5):
    self.k, self.groups, self.beta = int(k), int(groups), float(beta)

  @property
  def samples(self):
    """Latent paths drawn per image: ``M * k`` (the noise's leading axis)."""
    return self.groups * self.k

  def __call__(self, model, x, noise):
    """The ``ObjectiveOutput`` of ``model`` on binary ``x`` ``[batch, D]`` for
    ``noise`` (``model.draw_noise(self.samples, batch, seed)``)."""
    log_w = model.log_weights(x, noise, stop_q_params=self.stop_q_params)
    log_w = bounds.split_groups(log_w, self.groups)  # [M, k, batch]
    bound = tf.reduce_mean(bounds.log_mean_exp(log_w, axis=1), axis=0)  # [batch]
    return self.output(log_w, bound)

  def output(self, log_w, bound):
    raise NotImplementedError

  def gradients(self, model, x, noise, scale=1.0):
    """The estimator: gradients of ``-scale * surrogate`` (the encoder's own
    surrogate for its weights when ``split_gradients``).

    Args:
      model: an ``IWAEModel``.
      x: ``[batch, D]`` binary images.
      noise: as for ``__call__``.
      scale: factor on the loss, e.g. ``1 / replicas`` so that the replicas'
        summed gradients are the gradient of the global batch's mean.

    Returns:
      ``(output, grads, variables)``: the ``ObjectiveOutput`` and the
      gradients w.r.t. ``variables`` (the model's trainable variables).
    """
    split = self.split_gradients
    with tf.GradientTape(persistent=split) as tape:
      out = self(model, x, noise)
      loss = -scale * out.surrogate
      encoder_loss = -scale * out.encoder_surrogate if split else None
    if split:
      enc, dec = model.encoder_variables, model.decoder_variables
      grads = tape.gradient(encoder_loss, enc) + tape.gradient(loss, dec)
      variables = enc + dec
      del tape
    else:
      variables = model.trainable_variables
      grads = tape.gradient(loss, variables)
    return out, grads, variables


class VAE(Objective):
  """The k-sample ELBO (average of log w over the samples)."""

  def output(self, log_w, bound):
    value = tf.reduce_mean(log_w)
    return ObjectiveOutput(surrogate=value, value=value, bound=bound)


class IWAE(Objective):
  """L_k (averaged over groups: with M > 1 this is MIWAE)."""

  def output(self, log_w, bound):
    value = tf.reduce_mean(bound)
    return ObjectiveOutput(surrogate=value, value=value, bound=bound)


class STL(IWAE):
  """L_k with the score term of q removed (path derivative only)."""
  stop_q_params = True


class VAESTL(VAE):
  """The k-sample ELBO with the score term of q removed."""
  stop_q_params = True


class DReG(Objective):
  """Doubly reparameterised IWAE gradient."""
  split_gradients = True
  stop_q_params = True

  def output(self, log_w, bound):
    value = tf.reduce_mean(bound)
    weights = tf.stop_gradient(tf.nn.softmax(log_w, axis=1))  # w~ within each group
    batch = tf.cast(tf.shape(log_w)[-1], log_w.dtype)
    encoder = tf.reduce_sum(tf.square(weights) * log_w) / (batch * self.groups)
    # The decoder does not see q's parameters, so L_k of these log-weights
    # has the standard IWAE gradient w.r.t. it.
    return ObjectiveOutput(surrogate=value, value=value, bound=bound,
                           encoder_surrogate=encoder)


class CIWAE(Objective):
  """Convex combination ``beta * ELBO + (1 - beta) * L_k``."""

  def output(self, log_w, bound):
    value = (self.beta * tf.reduce_mean(log_w) +
             (1.0 - self.beta) * tf.reduce_mean(bound))
    return ObjectiveOutput(surrogate=value, value=value, bound=bound)


class PIWAE(Objective):
  """Decoder on L_{M*k} over all samples, encoder on MIWAE(M, k)."""
  split_gradients = True

  def output(self, log_w, bound):
    all_samples = tf.reshape(log_w, [-1, tf.shape(log_w)[-1]])
    decoder = tf.reduce_mean(bounds.iwae_bound(all_samples))
    return ObjectiveOutput(surrogate=decoder, value=decoder, bound=bound,
                           encoder_surrogate=tf.reduce_mean(bound))


# The classes of the (objective, estimator) pairs that config.ESTIMATORS allows
# (names, help and rules live there; tests/test_objectives.py checks both agree).
ESTIMATORS = {
    'iwae': {'iwae': IWAE, 'stl': STL, 'dreg': DReG, 'miwae': IWAE, 'ciwae': CIWAE,
             'piwae': PIWAE},
    'vae': {'iwae': VAE, 'stl': VAESTL},
}


def make(config):
  """Builds the objective named by an ``ObjectiveConfig``."""
  return ESTIMATORS[config.name][config.estimator](config.k, config.groups, config.beta)

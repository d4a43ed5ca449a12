"""Training objectives: log-weights in, a surrogate to maximise out.

An objective draws ``num_samples`` latent paths per image from the model,
and returns an ``ObjectiveOutput``:

* ``surrogate``: scalar whose gradient (w.r.t. the decoder, and the encoder
  unless ``split_gradients``) is the gradient estimator;
* ``encoder_surrogate``: when ``split_gradients``, the scalar whose gradient
  w.r.t. the encoder is used instead;
* ``value``: the objective being optimised, averaged over the batch (e.g. the
  k-sample ELBO for the VAE), logged as ``-loss``;
* ``bound``: ``[batch]`` the true ``L_k`` of the same samples, reported
  whatever the estimator.

Objectives (Burda et al. 2016):
  * ``iwae``: maximise ``L_k = E[log (1/k) sum_i w_i]`` with the standard
    reparameterised gradient.
  * ``vae``: maximise the k-sample ELBO ``E[(1/k) sum_i log w_i]``.
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
  """Base class. Subclasses implement ``__call__(model, x, seed)``.

  Attributes:
    k: importance samples per group (the bound reported is L_k).
    split_gradients: whether encoder and decoder use different surrogates.
  """
  split_gradients = False

  def __init__(self, k):
    self.k = int(k)

  def __call__(self, model, x, seed):
    raise NotImplementedError


class IWAE(Objective):
  """The importance-weighted bound L_k."""

  def __call__(self, model, x, seed):
    bound = bounds.iwae_bound(model.log_weights(x, self.k, seed))
    value = tf.reduce_mean(bound)
    return ObjectiveOutput(surrogate=value, value=value, bound=bound)


class VAE(Objective):
  """The k-sample ELBO (average of log w over k samples)."""

  def __call__(self, model, x, seed):
    log_w = model.log_weights(x, self.k, seed)
    value = tf.reduce_mean(bounds.elbo(log_w))
    return ObjectiveOutput(surrogate=value, value=value,
                           bound=bounds.iwae_bound(log_w))


REGISTRY = {'iwae': IWAE, 'vae': VAE}


def make(config):
  """Builds the objective named by an ``ObjectiveConfig``."""
  return REGISTRY[config.name](config.k)

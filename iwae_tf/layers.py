"""Stochastic layers: Keras layers whose ``call`` returns a TFP distribution.

Each layer is a tanh MLP followed by a distribution head:

* ``GaussianLayer``: ``N(mu(h), diag(sigma(h)^2))`` with ``sigma = exp(linear)``
  (Burda et al. 2016, appendix), as ``tfd.Independent`` over the last axis.
* ``BernoulliLayer``: Bernoulli on logits over the last axis (the pixels),
  ``BernoulliLogits`` (TFP's Bernoulli with a cheaper ``log_prob``).

Inputs may carry any leading axes, e.g. ``[k, batch, d]``; the returned
distribution has those leading axes as batch shape and the last as event.
"""

import keras
import tensorflow as tf
import tensorflow_probability as tfp
# TensorFlow's own test for "this graph is being compiled with XLA" (used by
# its gradient and control-flow code); there is no public equivalent.
from tensorflow.python.ops import control_flow_util

tfd = tfp.distributions


class _MLP(keras.layers.Layer):
  """Stack of tanh Dense layers."""

  def __init__(self, hidden, **kwargs):
    super().__init__(**kwargs)
    self.hidden = [keras.layers.Dense(h, activation='tanh', name=f'dense_{i}')
                   for i, h in enumerate(hidden)]

  def call(self, h):
    for layer in self.hidden:
      h = layer(h)
    return h


class GaussianLayer(keras.layers.Layer):
  """h -> tanh MLP -> diagonal Gaussian with std = exp(linear)."""

  def __init__(self, hidden, units, **kwargs):
    super().__init__(**kwargs)
    self.units = units
    self.mlp = _MLP(hidden, name='mlp')
    self.loc = keras.layers.Dense(units, name='loc')
    self.log_scale = keras.layers.Dense(units, name='log_scale')

  @property
  def heads(self):
    """The Dense layers that give the distribution's parameters."""
    return [self.loc, self.log_scale]

  @property
  def readers(self):
    """The Dense layers that read this layer's input."""
    return self.mlp.hidden[:1] or self.heads

  def call(self, h):
    """Args: h ``[..., d_in]``. Returns: distribution, batch ``[...]``, event ``[units]``."""
    h = self.mlp(h)
    return tfd.Independent(
        tfd.Normal(loc=self.loc(h), scale=tf.exp(self.log_scale(h))),
        reinterpreted_batch_ndims=1)


class BernoulliLogits(tfd.Bernoulli):
  """``tfd.Bernoulli`` on logits whose ``log_prob`` costs one softplus.

  TFP's Bernoulli evaluates ``-softplus(-s)`` and ``-softplus(s)`` for every
  pixel and mixes them; for a binary or fractional event ``x`` the same log
  probability is ``-sigmoid_cross_entropy_with_logits(x, s) = x s -
  softplus(s)`` computed stably by TensorFlow with one ``exp`` and one
  ``log1p``. With k = 50 the decoder output has 784 k values per image, and
  this halved the transcendental work of the likelihood (README, Benchmarks).
  """

  def _log_prob(self, event):
    logits = self._logits_parameter_no_checks()
    event = tf.cast(event, logits.dtype)
    # Events broadcast against the logits, e.g. [batch, D] images against
    # [k, batch, D] logits (fused away under XLA).
    shape = tf.broadcast_dynamic_shape(tf.shape(logits), tf.shape(event))
    return -tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.broadcast_to(event, shape),
                                                    logits=tf.broadcast_to(logits, shape))


class BernoulliLayer(keras.layers.Layer):
  """h -> tanh MLP -> independent Bernoulli on logits.

  Args:
    hidden: hidden sizes.
    units: output dimension (pixels).
    bias: optional ``[units]`` initial output bias, e.g. the logit of the mean
      training pixel (Burda et al. 2016).
  """

  def __init__(self, hidden, units, bias=None, **kwargs):
    super().__init__(**kwargs)
    self.mlp = _MLP(hidden, name='mlp')
    init = 'zeros' if bias is None else keras.initializers.Constant(bias)
    self.logits = keras.layers.Dense(units, bias_initializer=init, name='logits')

  @property
  def heads(self):
    """The Dense layers that give the distribution's parameters."""
    return [self.logits]

  @property
  def readers(self):
    """The Dense layers that read this layer's input."""
    return self.mlp.hidden[:1] or self.heads

  def call(self, h):
    """Args: h ``[..., d_in]``. Returns: distribution, batch ``[...]``, event ``[units]``."""
    return tfd.Independent(BernoulliLogits(logits=self.logits(self.mlp(h)), dtype=tf.float32),
                           reinterpreted_batch_ndims=1)


def standard_normal(units, dtype=tf.float32):
  """The prior ``N(0, I)`` over ``units`` dimensions (event shape ``[units]``)."""
  return tfd.Independent(tfd.Normal(tf.zeros([units], dtype), tf.ones([units], dtype)),
                         reinterpreted_batch_ndims=1)


def noise_alg():
  """The stateless generator for noise drawn in the graph being traced.

  ThreeFry-2x32 (20 rounds; Salmon et al. 2011, passes TestU01's BigCrush;
  JAX's default generator) inside an XLA-compiled function, Philox
  elsewhere, since TensorFlow's CPU kernels implement only Philox. Under
  XLA on the CPU, ThreeFry is the fastest of the three (Philox, and
  ``auto_select``, the default that ``tfd.Normal.sample`` uses, are several
  times slower; with Philox, the binarisation noise alone was a noticeable
  share of a k = 1 step: bench/README.md). Same seed, different stream: runs
  with and without ``--jit_compile`` draw different (equally valid) noise.
  """
  xla = control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())
  return 'threefry' if xla else 'philox'


def standard_normal_noise(shape, seed, dtype=tf.float32):
  """``N(0, I)`` noise of ``shape`` from the stateless seed ``[2]``, drawn with
  ``noise_alg``'s generator (the reparameterisation noise of ``reparameterize``)."""
  return tf.random.stateless_normal(shape, seed, dtype=dtype, alg=noise_alg())


def reparameterize(dist, eps):
  """The sample ``loc + scale * eps`` of a diagonal Gaussian from ``GaussianLayer``.

  Args:
    dist: ``tfd.Independent(tfd.Normal)`` with batch shape ``B``.
    eps: standard normal noise ``[*S, *B, d]`` (leading sample axes ``S``,
      e.g. ``[k]``, broadcast against the parameters).

  Returns:
    ``[*S, *B, d]`` samples, differentiable w.r.t. the parameters.
  """
  base = dist.distribution
  return base.loc + base.scale * eps


def stop_gradient_params(dist):
  """The same diagonal Gaussian with its parameters' gradients stopped.

  Used by estimators that keep the path derivative through a sample but drop
  the score-function term (Roeder et al. 2017; Tucker et al. 2018).
  """
  base = dist.distribution
  return tfd.Independent(tfd.Normal(tf.stop_gradient(base.loc),
                                    tf.stop_gradient(base.scale)),
                         reinterpreted_batch_ndims=1)

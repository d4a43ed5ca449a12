"""The IWAE / VAE model: a Keras model with a custom ``train_step``.

Generative model with L stochastic layers (bottom first, ``h_1`` nearest x):

    p(x, h_1..h_L) = p(h_L) p(h_{L-1}|h_L) ... p(h_1|h_2) p(x|h_1),
    p(h_L) = N(0, I), p(h_l|h_{l+1}) diagonal Gaussian, p(x|h_1) Bernoulli;

recognition model ``q(h_1..h_L|x) = q(h_1|x) q(h_2|h_1) ... q(h_L|h_{L-1})``.
For ``k`` samples the log-weights are

    log w_i = log p(x, h^(i)) - log q(h^(i)|x),   h^(i) ~ q(.|x),

of shape ``[k, batch]`` (the package's axis convention: samples first). The
training objective (``objectives.py``) turns them into a surrogate whose
gradient is the estimator of choice; the bounds themselves live in
``bounds.py``.

Training data arrives as uint8 grey levels and is binarised dynamically
inside the compiled step (a fresh Bernoulli draw from the model's
``tf.random.Generator``, whose state is checkpointed); float inputs are
taken as already binary (fixed evaluation binarisation).
"""

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from iwae_tf import bounds
from iwae_tf import layers

tfd = tfp.distributions


class IWAEModel(keras.Model):
  """VAE/IWAE with any number of stochastic layers.

  Args:
    config: a ``ModelConfig``.
    objective: an ``objectives.Objective``, used by ``train_step``/``test_step``.
    output_bias: optional ``[data_dim]`` initial logits of p(x|h_1).
    seed: seed of the generator that drives binarisation and sampling.
  """

  def __init__(self, config, objective, output_bias=None, seed=0, **kwargs):
    super().__init__(**kwargs)
    self.config = config
    self.objective = objective
    lat, hid = config.latents, config.hidden
    self.encoders = [layers.GaussianLayer(hid[i], lat[i], name=f'q_h{i + 1}')
                     for i in range(len(lat))]
    # decoders[0] is p(x|h_1); decoders[l] is p(h_l|h_{l+1}); hidden mirrored.
    self.decoders = [layers.BernoulliLayer(tuple(reversed(hid[0])), config.data_dim,
                                           bias=output_bias, name='p_x')]
    self.decoders += [layers.GaussianLayer(tuple(reversed(hid[i])), lat[i - 1],
                                           name=f'p_h{i}')
                      for i in range(1, len(lat))]
    self.prior = layers.standard_normal(lat[-1])
    self.rng = tf.random.Generator.from_seed(seed)
    self.loss_tracker = keras.metrics.Mean(name='loss')
    self.bound_tracker = keras.metrics.Mean(name='bound')
    self.build_all()

  def build_all(self):
    """Creates every weight (so checkpoints can be restored eagerly)."""
    x = tf.zeros([1, self.config.data_dim])
    self.log_weights(x, 1, tf.constant([0, 0], tf.int32))

  @property
  def encoder_variables(self):
    return [v for e in self.encoders for v in e.trainable_variables]

  @property
  def decoder_variables(self):
    return [v for d in self.decoders for v in d.trainable_variables]

  # ---------------------------------------------------------------- inference
  def encode(self, x, k, seed, stop_q_params=False):
    """Samples ``k`` latent paths from q and scores them under q.

    Args:
      x: ``[batch, D]`` binary float.
      k: number of samples.
      seed: stateless seed, shape ``[2]``.
      stop_q_params: evaluate ``log q`` with the distribution parameters'
        gradients stopped (the path derivative through the samples is kept).

    Returns:
      ``(hs, log_q)``: list of ``[k, batch, d_l]`` samples, bottom first, and
      ``[k, batch]`` ``log q(h|x)``.
    """
    seeds = tfp.random.split_seed(seed, n=len(self.encoders))
    hs, log_q, h = [], 0.0, x
    for l, encoder in enumerate(self.encoders):
      q = encoder(h)
      h = layers.sample(q, seeds[l], [k] if l == 0 else [])
      if stop_q_params:
        q = layers.stop_gradient_params(q)
      log_q += q.log_prob(h)
      hs.append(h)
    return hs, log_q

  def log_joint(self, x, hs):
    """``log p(x, h)`` for latent paths ``hs`` (each ``[..., batch, d_l]``).

    Returns:
      ``[..., batch]`` log joint.
    """
    log_p = self.prior.log_prob(hs[-1]) + self.decoders[0](hs[0]).log_prob(x)
    for l in range(1, len(hs)):
      log_p += self.decoders[l](hs[l]).log_prob(hs[l - 1])
    return log_p

  def log_weights(self, x, k, seed, stop_q_params=False):
    """``[k, batch]`` log importance weights ``log p(x,h) - log q(h|x)``."""
    hs, log_q = self.encode(x, k, seed, stop_q_params)
    return self.log_joint(x, hs) - log_q

  def posterior_means(self, x, seed, num_samples=1):
    """Per stochastic layer, ``E_q[h_l]`` estimated for each image.

    The first layer's mean is exact; deeper layers average the conditional
    mean over ``num_samples`` samples of the layer below.

    Returns:
      list of ``[batch, d_l]``.
    """
    seeds = tfp.random.split_seed(seed, n=len(self.encoders))
    means, h = [], x
    for l, encoder in enumerate(self.encoders):
      q = encoder(h)
      means.append(tf.reduce_mean(q.mean(), axis=0) if l else q.mean())
      h = layers.sample(q, seeds[l], [num_samples] if l == 0 else [])
    return means

  def call(self, x, training=None):
    """Per-example ``L_k`` with the objective's ``k`` (``[batch]``)."""
    seed = self.next_seed()
    return bounds.iwae_bound(self.log_weights(x, self.objective.k, seed))

  # ---------------------------------------------------------------- training
  def next_seed(self):
    """A fresh stateless seed ``[2]`` int32 from the model's generator."""
    return self.rng.uniform_full_int([2], dtype=tf.int32)

  def binarize(self, x):
    """uint8 grey levels -> a fresh Bernoulli draw; floats pass through."""
    if x.dtype == tf.uint8:
      p = tf.cast(x, tf.float32) / 255.0
      return tf.cast(self.rng.uniform(tf.shape(p)) < p, tf.float32)
    return tf.cast(x, tf.float32)

  def train_step(self, data):
    """One or several optimisation steps in one compiled call.

    Args:
      data: ``[batch, D]`` images, or ``[steps, batch, D]`` for ``steps``
        consecutive optimisation steps run in a loop inside the compiled
        function (the maths is that of ``steps`` separate calls; the loop
        only removes per-step host overhead).
    """
    if data.shape.rank == 2:
      self._train_one(data)
    else:
      tf.while_loop(lambda i: i < tf.shape(data)[0],
                    lambda i: (self._train_one(data[i]) or i + 1,), (tf.constant(0),))
    return {'loss': self.loss_tracker.result(), 'bound': self.bound_tracker.result()}

  def gradients(self, x, seed):
    """The objective's estimator on binary ``x``.

    Returns:
      ``(output, grads, variables)``: the ``ObjectiveOutput`` and the
      gradients of the loss (``-surrogate``) w.r.t. ``variables``.
    """
    split = self.objective.split_gradients
    with tf.GradientTape(persistent=split) as tape:
      out = self.objective(self, x, seed)
      loss = -out.surrogate
      encoder_loss = -out.encoder_surrogate if split else None
    if split:
      enc, dec = self.encoder_variables, self.decoder_variables
      grads = tape.gradient(encoder_loss, enc) + tape.gradient(loss, dec)
      variables = enc + dec
      del tape
    else:
      variables = self.trainable_variables
      grads = tape.gradient(loss, variables)
    return out, grads, variables

  def _train_one(self, data):
    x = self.binarize(data)
    out, grads, variables = self.gradients(x, self.next_seed())
    self.optimizer.apply(grads, variables)
    self.loss_tracker.update_state(-out.value)
    self.bound_tracker.update_state(tf.reduce_mean(out.bound))

  def test_step(self, data):
    x = self.binarize(data)
    seed = self.next_seed()
    out = self.objective(self, x, seed)
    self.loss_tracker.update_state(-out.value)
    self.bound_tracker.update_state(tf.reduce_mean(out.bound))
    return {'loss': self.loss_tracker.result(), 'bound': self.bound_tracker.result()}

  @property
  def metrics(self):
    return [self.loss_tracker, self.bound_tracker]

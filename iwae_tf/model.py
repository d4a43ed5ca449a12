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

Training data arrives as integer grey levels and is binarised dynamically
inside the compiled step (a fresh Bernoulli draw); float inputs are taken as
already binary (fixed evaluation binarisation). A training step's randomness
(binarisation, then sampling) comes from the stateless seed
``(seed, optimizer.iterations)``: a pure function of the run's seed and the
step number, identical on every replica, restored with the optimizer on
resume, and independent of how the batch is split over devices
(``distribute.py``); the stateless generator is ``layers.noise_alg``'s
(ThreeFry inside XLA programs, Philox elsewhere). Evaluation-time sampling
(``call``, ``test_step``) uses the model's ``tf.random.Generator``.
"""

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from iwae_tf import bounds
from iwae_tf import distribute
from iwae_tf import layers

tfd = tfp.distributions


def layer_seeds(seed, n):
  """``n`` stateless seeds, one per stochastic layer (``seed`` itself if one)."""
  return [seed] if n == 1 else tfp.random.split_seed(seed, n=n)


class IWAEModel(keras.Model):
  """VAE/IWAE with any number of stochastic layers.

  Args:
    config: a ``ModelConfig``.
    objective: an ``objectives.Objective``, used by ``train_step``/``test_step``.
    output_bias: optional ``[data_dim]`` initial logits of p(x|h_1).
    seed: seed of the training steps' randomness and of the generator used
      by ``call`` and ``test_step``.
    jit_replica_step: under a distribution strategy, compile each replica's
      gradient computation with XLA (the step as a whole cannot be: it
      all-reduces across devices).
  """

  def __init__(self, config, objective, output_bias=None, seed=0, jit_replica_step=True,
               **kwargs):
    super().__init__(**kwargs)
    self.config = config
    self.objective = objective
    self.train_seed = int(seed)
    self.jit_replica_step = jit_replica_step
    self._train_images = None  # a tf.Variable, not a weight: never checkpointed
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
  def encode(self, x, k, seed, stop_q_params=False, shard=None):
    """Samples ``k`` latent paths from q and scores them under q.

    Args:
      x: ``[batch, D]`` binary float.
      k: number of samples.
      seed: stateless seed, shape ``[2]``.
      stop_q_params: evaluate ``log q`` with the distribution parameters'
        gradients stopped (the path derivative through the samples is kept).
      shard: ``x`` is this ``distribute.Shard`` of a global batch; the noise
        is that of its rows in the global batch.

    Returns:
      ``(hs, log_q)``: list of ``[k, batch, d_l]`` samples, bottom first, and
      ``[k, batch]`` ``log q(h|x)``.
    """
    seeds = layer_seeds(seed, len(self.encoders))
    hs, log_q, h = [], 0.0, x
    for l, encoder in enumerate(self.encoders):
      q = encoder(h)
      h = layers.sample(q, seeds[l], [k] if l == 0 else [], shard)
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

  def log_weights(self, x, k, seed, stop_q_params=False, shard=None):
    """``[k, batch]`` log importance weights ``log p(x,h) - log q(h|x)``."""
    hs, log_q = self.encode(x, k, seed, stop_q_params, shard)
    return self.log_joint(x, hs) - log_q

  def posterior_means(self, x, seed, num_samples=1):
    """Per stochastic layer, ``E_q[h_l]`` estimated for each image.

    The first layer's mean is exact; deeper layers average the conditional
    mean over ``num_samples`` samples of the layer below.

    Returns:
      list of ``[batch, d_l]``.
    """
    seeds = layer_seeds(seed, len(self.encoders))
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

  def step_seeds(self):
    """``[2, 2]`` stateless seeds (binarisation, sampling) of this training step.

    A function of the run's seed and ``optimizer.iterations`` only.
    """
    # Distinct stateless seeds key independent streams (Philox or ThreeFry), so no hashing
    # is needed: (seed, 2t) binarises and (seed, 2t + 1) samples at step t.
    step = 2 * tf.cast(self.optimizer.iterations, tf.int32)
    seed = tf.constant(self.train_seed, tf.int32)
    return tf.stack([tf.stack([seed, step]), tf.stack([seed, step + 1])])

  def binarize(self, x, seed=None, shard=None):
    """Integer (uint8 or int32) grey levels -> a fresh Bernoulli draw;
    floats pass through.

    Args:
      x: ``[batch, D]``; with ``shard``, the whole global batch, of which
        this shard's rows are returned.
      seed: stateless seed; default: the model's generator.
      shard: a ``distribute.Shard`` or None.
    """
    x = distribute.take_rows(x, shard, 0)
    if not x.dtype.is_integer:
      return tf.cast(x, tf.float32)
    p = tf.cast(x, tf.float32) / 255.0
    if seed is None:
      return tf.cast(self.rng.uniform(tf.shape(p)) < p, tf.float32)
    shape = distribute.global_shape(tf.shape(p), shard, 0)
    u = tf.random.stateless_uniform(shape, seed, alg=layers.noise_alg())
    u = distribute.take_rows(u, shard, 0)
    return tf.cast(u < p, tf.float32)

  def set_train_images(self, images):
    """Keeps the uint8 training images ``[n, D]`` on the device, once.

    ``train_step`` then takes batches of indices into them, so the input
    pipeline carries a few bytes per step instead of the images.
    """
    images = tf.convert_to_tensor(images, tf.uint8)
    if self._train_images is not None and self._train_images.shape == images.shape:
      self._train_images.assign(images)
      return
    with tf.init_scope():
      self._train_images = tf.Variable(images, trainable=False, name='train_images')
    self.train_function = None  # a compiled step holds the previous variable

  def train_step(self, data):
    """One or several optimisation steps.

    Args:
      data: on the default strategy, ``[batch]`` int32 indices into the
        images given to ``set_train_images`` (or ``[batch, D]`` images), or
        ``[steps, batch]`` indices (``[steps, batch, D]`` images) for
        ``steps`` consecutive optimisation steps run in a loop inside the
        compiled function (the maths is that of ``steps`` separate calls;
        the loop only removes per-step host overhead). Under a distribution
        strategy, ``[batch, D]`` integer images: every replica receives the
        global batch and trains on its shard of it.
    """
    if tf.distribute.has_strategy():
      self._train_replica(data)
      return self._results()
    indices = data.dtype in (tf.int32, tf.int64)
    if indices and self._train_images is None:
      raise ValueError('train_step got indices, but set_train_images was not called')
    if data.shape.rank == (1 if indices else 2):
      data = data[tf.newaxis]

    def one_step(i):
      self._train_one(tf.gather(self._train_images, data[i]) if indices else data[i])
      return (i + 1,)

    tf.while_loop(lambda i: i < tf.shape(data)[0], one_step, (tf.constant(0),))
    return self._results()

  def gradients(self, x, seed, shard=None):
    """The objective's estimator on binary ``x``.

    Args:
      x: ``[batch, D]`` binary images (this shard's rows).
      seed: stateless sampling seed.
      shard: a ``distribute.Shard``: the loss is divided by the number of
        shards, so that the sum of the shards' gradients is the gradient of
        the global batch mean.

    Returns:
      ``(output, grads, variables)``: the ``ObjectiveOutput`` and the
      gradients of the loss (``-surrogate``) w.r.t. ``variables``.
    """
    split = self.objective.split_gradients
    scale = 1.0 if shard is None else 1.0 / shard.count
    with tf.GradientTape(persistent=split) as tape:
      out = self.objective(self, x, seed, shard)
      loss = -scale * out.surrogate
      encoder_loss = -scale * out.encoder_surrogate if split else None
    if split:
      enc, dec = self.encoder_variables, self.decoder_variables
      grads = tape.gradient(encoder_loss, enc) + tape.gradient(loss, dec)
      variables = enc + dec
      del tape
    else:
      variables = self.trainable_variables
      grads = tape.gradient(loss, variables)
    return out, grads, variables

  def _step(self, data, seeds, shard=None):
    """Binarises, then the estimator: ``(value, mean bound, grads, variables)``."""
    x = self.binarize(data, seeds[0], shard)
    out, grads, variables = self.gradients(x, seeds[1], shard)
    return out.value, tf.reduce_mean(out.bound), grads, variables

  def _train_one(self, data):
    value, bound, grads, variables = self._step(data, self.step_seeds())
    self.optimizer.apply(grads, variables)
    self.loss_tracker.update_state(-value)
    self.bound_tracker.update_state(bound)

  def make_train_function(self, force=False):
    """Keras' training function, except under a distribution strategy.

    There, ``steps_per_execution`` steps run per call in a ``tf.range`` loop
    around ``strategy.run``, in cross-replica context (the pattern of
    TensorFlow's distributed custom training loops): Keras 3's own loop
    fails when the step all-reduces (keras-team/keras#19246). Epochs are
    whole numbers of calls (``training.steps_per_execution``), so the loop
    never meets the end of the data.
    """
    # Keras' private record of the strategy the model was built under (None
    # outside any scope); the public ``distribute_strategy`` falls back to the
    # default strategy and cannot tell. tests/test_private_interfaces.py.
    if self._distribute_strategy is None:
      return super().make_train_function(force)
    if self.train_function is not None and not force:
      return self.train_function
    strategy, steps = self.distribute_strategy, self.steps_per_execution

    @tf.function
    def run_steps(iterator):
      for _ in tf.range(steps):
        strategy.run(self.train_step, args=(next(iterator),))
      return self._results()

    self.train_function = run_steps
    return run_steps

  def _train_replica(self, data):
    """One step on this replica's shard of the global batch ``data``."""
    shard = distribute.replica_shard()
    variables = []

    def replica_step(data, seeds, index):
      value, bound, grads, variables[:] = self._step(data, seeds,
                                                     distribute.Shard(index, shard.count))
      return value, bound, grads

    if self.jit_replica_step:
      replica_step = tf.function(replica_step, jit_compile=True, autograph=False)
    value, bound, grads = replica_step(data, self.step_seeds(),
                                       tf.convert_to_tensor(shard.index, tf.int32))
    # The optimizer all-reduces (sums) the replicas' gradients.
    self.optimizer.apply(grads, variables)
    self.loss_tracker.update_state(-value)
    self.bound_tracker.update_state(bound)

  def test_step(self, data):
    x = self.binarize(data)
    seed = self.next_seed()
    out = self.objective(self, x, seed)
    self.loss_tracker.update_state(-out.value)
    self.bound_tracker.update_state(tf.reduce_mean(out.bound))
    return self._results()

  def _results(self):
    """The logs of a train or test step: running means since the epoch began."""
    return {m.name: m.result() for m in self.metrics}

  @property
  def metrics(self):
    return [self.loss_tracker, self.bound_tracker]

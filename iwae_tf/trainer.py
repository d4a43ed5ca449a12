"""The trainer: a Keras model whose ``train_step`` optimises an objective of a
probabilistic model (``model.IWAEModel``), on one device or several.

What the trainer owns and the model does not:

* The data on the device: training images arrive as integer grey levels,
  kept on the device (``set_train_images``; each call then receives indices)
  and binarised dynamically inside the compiled step (a fresh Bernoulli
  draw). Float inputs are taken as already binary.
* The step's randomness: binarisation and sampling noise come from the
  stateless seeds ``(seed, 2t)`` and ``(seed, 2t + 1)`` at optimisation step
  ``t = optimizer.iterations``: a pure function of the run's seed and the
  step number, identical on every replica, restored with the optimizer on
  resume. The stateless generator is ``layers.noise_alg``'s (ThreeFry inside
  XLA programs, Philox elsewhere).
* The loops: on one device, several steps per compiled call in a
  ``tf.while_loop`` (one XLA program); under a distribution strategy, a loop
  around ``strategy.run`` (``make_train_function``).
* Replicas: every replica receives the step's global batch. The binarisation
  and the sampling noise are drawn for the whole global batch, and each
  replica takes its rows of images and noise once, at the start of the step
  (``_step``), so the model and the objectives never see a replica: replica
  ``r`` computes exactly what one device computes on those rows
  (``distribute.py``).
* Evaluation-time randomness (``call``, ``test_step``): the trainer's
  ``tf.random.Generator``, saved in checkpoints as ``rng``.
"""

import keras
import tensorflow as tf

from iwae_tf import bounds
from iwae_tf import distribute
from iwae_tf import layers


class Trainer(keras.Model):
  """Fits ``model`` to ``objective`` with Keras' ``fit``.

  Args:
    model: an ``IWAEModel``.
    objective: an ``objectives.Objective``.
    seed: seed of the training steps' randomness and of the generator used
      by ``call`` and ``test_step``.
    jit_replica_step: under a distribution strategy, compile each replica's
      gradient computation with XLA (the step as a whole cannot be: it
      all-reduces across devices).
    sum_over_batch: optimise the objective summed over the (global) batch's
      images, as the original code did, instead of their mean; the reported
      loss stays the mean.
  """

  def __init__(self, model, objective, seed=0, jit_replica_step=True, sum_over_batch=False,
               **kwargs):
    super().__init__(**kwargs)
    self.sum_over_batch = sum_over_batch
    self.model = model
    self.objective = objective
    self.train_seed = int(seed)
    self.jit_replica_step = jit_replica_step
    self._train_images = None  # a tf.Variable, not a weight: never checkpointed
    self.rng = tf.random.Generator.from_seed(seed)
    self.loss_tracker = keras.metrics.Mean(name='loss')
    self.bound_tracker = keras.metrics.Mean(name='bound')
    self.built = True  # the model made every weight: Keras need not trace a batch

  def call(self, x, training=None):
    """Per-example ``L_k`` with the objective's ``k`` (``[batch]``)."""
    noise = self.model.draw_noise(self.objective.k, tf.shape(x)[0], self.next_seed())
    return bounds.iwae_bound(self.model.log_weights(x, noise))

  # --------------------------------------------------------------- randomness
  def next_seed(self):
    """A fresh stateless seed ``[2]`` int32 from the trainer's generator."""
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

  def binarize(self, x, seed=None):
    """Integer (uint8 or int32) grey levels ``[batch, D]`` -> a fresh
    Bernoulli draw; floats pass through.

    Args:
      x: ``[batch, D]``.
      seed: stateless seed; default: the trainer's generator.
    """
    if not x.dtype.is_integer:
      return tf.cast(x, tf.float32)
    p = tf.cast(x, tf.float32) / 255.0
    if seed is None:
      return tf.cast(self.rng.uniform(tf.shape(p)) < p, tf.float32)
    u = tf.random.stateless_uniform(tf.shape(p), seed, alg=layers.noise_alg())
    return tf.cast(u < p, tf.float32)

  # ----------------------------------------------------------------- the step
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
        global batch and trains on its rows of it.
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

  def _step(self, data, seeds, shard=None):
    """Binarises, draws the noise, then the estimator.

    Args:
      data: ``[B, D]`` the global batch's grey levels (or binary floats).
      seeds: ``step_seeds()``.
      shard: this replica's ``distribute.Shard`` of the batch, or None.

    Returns:
      ``(value, mean bound, grads, variables)``; under ``shard``, the
      gradients of this replica's rows, scaled by ``1 / replicas``.
    """
    x = self.binarize(data, seeds[0])
    noise = self.model.draw_noise(self.objective.samples, tf.shape(x)[0], seeds[1])
    scale = tf.cast(tf.shape(x)[0], tf.float32) if self.sum_over_batch else 1.0
    if shard is not None and shard.count > 1:
      # The one place where replicas differ: each takes its rows of the global
      # batch's images and noise (the batch axis is 0 for images, 1 for noise).
      x = distribute.take_rows(x, shard, 0)
      noise = [distribute.take_rows(eps, shard, 1) for eps in noise]
      scale = scale / shard.count
    out, grads, variables = self.objective.gradients(self.model, x, noise, scale)
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
    """One step on this replica's rows of the global batch ``data``."""
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
    noise = self.model.draw_noise(self.objective.samples, tf.shape(x)[0], self.next_seed())
    out = self.objective(self.model, x, noise)
    self.loss_tracker.update_state(-out.value)
    self.bound_tracker.update_state(tf.reduce_mean(out.bound))
    return self._results()

  def _results(self):
    """The logs of a train or test step: running means since the epoch began."""
    return {m.name: m.result() for m in self.metrics}

  @property
  def metrics(self):
    return [self.loss_tracker, self.bound_tracker]

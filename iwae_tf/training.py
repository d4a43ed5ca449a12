"""A training run: schedule, TensorBoard, checkpoints each epoch, the fit loop.

The run directory's layout lives in ``rundir.py``. Resuming: rerunning the
same command restores the newest readable checkpoint and continues at the
next epoch, at that epoch's learning rate, with the same data order (each
epoch's order is a stateless function of seed and epoch) and the same
per-step noise (a stateless function of seed and step), so an interrupted
and resumed run follows the uninterrupted one, under any ``--strategy``
(``distribute.py``): checkpoints hold one copy of each variable whatever the
number of replicas.

What happens at each epoch's end (TensorBoard scalars, the checks for
divergence, the checkpoint and its milestone copy) is the callbacks'
(``callbacks.py``).
"""

import os
import shutil

import keras
import tensorflow as tf

from iwae_tf import callbacks as callbacks_lib
from iwae_tf import checkpoints
from iwae_tf import datasets as data_lib
from iwae_tf import distribute
from iwae_tf import memory
from iwae_tf import model as model_lib
from iwae_tf import objectives
from iwae_tf import rundir
from iwae_tf import trainer as trainer_lib


def build_model(config, x_train=None):
  """The probabilistic model of a ``TrainConfig``; output bias from ``x_train``."""
  bias = None if x_train is None else data_lib.mean_pixel_logit(x_train)
  return model_lib.IWAEModel(config.model, output_bias=bias)


def build_trainer(config, model):
  """The ``Trainer`` of ``model`` for the configured objective and seed."""
  return trainer_lib.Trainer(model, objectives.make(config.objective), seed=config.seed,
                             jit_replica_step=config.jit_compile,
                             sum_over_batch=config.sum_over_batch)


class OriginalAdam(keras.optimizers.Adam):
  """Keras' Adam with the second moment starting at ones instead of zeros, as
  in the original code (``config.py``'s procedures); the update is Keras'.

  The velocities are Keras' private ``_velocities`` (tests/test_private_interfaces.py).
  """

  def build(self, var_list):
    if self.built:
      return
    super().build(var_list)
    for v in self._velocities:
      v.assign(tf.ones_like(v))


def build_optimizer(config, trainer):
  """Adam with the configured settings (``OriginalAdam`` under the original
  procedure), built and attached to ``trainer``."""
  opt = config.optim
  adam = OriginalAdam if config.procedure == 'original' else keras.optimizers.Adam
  optimizer = adam(opt.learning_rate, beta_1=opt.beta1, beta_2=opt.beta2, epsilon=opt.epsilon)
  optimizer.build(trainer.trainable_variables)
  trainer.optimizer = optimizer
  return optimizer


def epoch_indices(n, batch_size, seed, first_epoch, last_epoch, steps_per_call=1,
                  shuffle=True):
  """Batches of indices into ``n`` training images, epochs ``[first, last)``.

  Each epoch is a permutation that is a stateless function of ``(seed,
  epoch)``, so a resumed run sees the same order (``shuffle=False``: the
  images' own order, every epoch, as the original code). The last partial batch of
  an epoch is dropped. ``steps_per_call`` consecutive batches are stacked so
  that the trainer's compiled ``train_step`` runs them in one call; an
  epoch's last stack holds the steps left over, so calls never straddle two
  epochs. ``None``: batches are not stacked.

  Returns:
    A ``tf.data.Dataset`` of ``[<= steps_per_call, batch_size]`` (or
    ``[batch_size]``) int32.
  """
  steps = n // batch_size

  def one_epoch(epoch):
    perm = (tf.random.experimental.stateless_shuffle(
        tf.range(n), seed=tf.stack([tf.constant(seed, tf.int64), epoch])) if shuffle
            else tf.range(n))
    batches = tf.data.Dataset.from_tensor_slices(
        tf.reshape(perm[:steps * batch_size], [steps, batch_size]))
    return batches if steps_per_call is None else batches.batch(steps_per_call)

  # The pipeline only slices a permutation: tf.data's autotuning and default
  # graph optimisations have nothing to gain, and their background work
  # measurably slowed training on 2 cores (bench/README.md).
  options = tf.data.Options()
  options.autotune.enabled = False
  options.experimental_optimization.apply_default_optimizations = False
  return (tf.data.Dataset.range(first_epoch, last_epoch).flat_map(one_epoch)
          .with_options(options))


def epoch_batches(x_train, batch_size, seed, first_epoch, last_epoch, steps_per_call=1,
                  shuffle=True):
  """The images of ``epoch_indices``: ``[<= steps_per_call, batch_size, D]`` (or
  ``[batch_size, D]``) uint8."""
  images = tf.constant(x_train)
  return (epoch_indices(len(x_train), batch_size, seed, first_epoch, last_epoch, steps_per_call,
                        shuffle)
          .map(lambda idx: tf.gather(images, idx), num_parallel_calls=tf.data.AUTOTUNE))


def steps_per_execution(steps_per_epoch, requested):
  """The largest divisor of ``steps_per_epoch`` not above ``requested``.

  Under a distribution strategy, steps are grouped into compiled calls of
  equal size (``Trainer.make_train_function``) that must tile the epoch, so
  that epochs stay aligned with the data order. (On one device an epoch's
  last call runs the steps left over instead: ``epoch_indices``.)
  """
  return max(d for d in range(1, max(1, min(requested, steps_per_epoch)) + 1)
             if steps_per_epoch % d == 0)


def compile_model(trainer, optimizer, config, num_train):
  """Compiles ``trainer`` for ``fit_epochs`` on ``num_train`` training images.

  One device: the whole step, ``steps_per_execution`` steps at a time, is
  one XLA program (``trainer.train_step`` loops over stacked batches). Under a
  distribution strategy the trainer's training function loops over
  ``steps_per_execution`` steps around ``strategy.run``, and each replica's
  gradient computation is XLA-compiled on its own (``jit_replica_step``): an
  all-reduce can sit neither inside an XLA program nor inside a loop of the
  step.
  """
  if config.strategy == 'default':
    trainer.compile(optimizer=optimizer, jit_compile=config.jit_compile)
  else:
    per_call = steps_per_execution(num_train // config.optim.batch_size,
                                   config.steps_per_execution)
    trainer.compile(optimizer=optimizer, jit_compile=False, steps_per_execution=per_call)


def fit_epochs(trainer, x_train, config, first_epoch, last_epoch, callbacks=(), strategy=None):
  """Trains a compiled ``trainer`` for epochs ``[first, last)``.

  ``config.steps_per_execution`` optimisation steps run per call (on one
  device, an epoch's last call runs the steps left over; under a strategy,
  the number is rounded down to divide the epoch).
  """
  steps = len(x_train) // config.optim.batch_size
  batch, seed = config.optim.batch_size, config.seed
  if config.strategy == 'default':
    # The images stay on the device; each call receives its batches' indices.
    trainer.set_train_images(x_train)
    per_call = min(config.steps_per_execution, steps)
    dataset = epoch_indices(len(x_train), batch, seed, first_epoch, last_epoch, per_call,
                            config.shuffle)
    steps_per_epoch = -(-steps // per_call)  # calls
  else:
    # int32, not uint8: Keras all-reduces a first batch to build the model
    # symbolically, and collective ops have no uint8 kernel.
    dataset = distribute.replicated_batches(
        strategy, lambda: epoch_batches(x_train, batch, seed, first_epoch, last_epoch,
                                        None, config.shuffle).map(lambda x: tf.cast(x, tf.int32)))
    steps_per_epoch = steps
  callbacks = list(callbacks)
  if config.verbose:
    callbacks.append(callbacks_lib.Progress(last_epoch, steps, config.verbose))
  trainer.fit(dataset, initial_epoch=first_epoch, epochs=last_epoch,
            steps_per_epoch=steps_per_epoch, callbacks=callbacks, verbose=0, shuffle=False)


def train(config):
  """Runs (or resumes) the training run described by ``config``.

  Under ``multiworker`` every worker runs this with the same ``config``; the
  chief writes the run directory, the others save their (discarded)
  checkpoint copies to a temporary directory, and all restore from the
  run directory, which must therefore be on a shared filesystem.

  Returns:
    The ``Trainer``; its ``model`` is the trained ``IWAEModel``.
  """
  # MultiWorkerMirroredStrategy must exist before any other TensorFlow op.
  strategy = distribute.make_strategy(config.strategy, config.devices)
  distribute.check_batch(config.optim.batch_size, strategy)
  chief = distribute.is_chief(strategy)
  if not memory.device_has_own_memory():
    groups, batch = config.objective.groups, config.optim.batch_size
    memory.check_fits(config.objective.k * groups * batch, config.model,
                      f'--k={config.objective.k} at --batch_size={batch}', ('k', groups * batch))
  splits = data_lib.make_splits(config.data)
  if len(splits.x_train) < config.optim.batch_size:
    raise data_lib.DataError(f'{splits.source}: {len(splits.x_train)} training images '
                             f'is fewer than one batch of {config.optim.batch_size}')
  if not chief:
    return _train(config, strategy, chief, splits)
  existed = os.path.exists(config.run_dir)
  try:
    with rundir.locked(config.run_dir):
      return _train(config, strategy, chief, splits)
  except BaseException:
    # A command refused or stopped before its first checkpoint leaves no run
    # directory behind if it made one: the corrected command starts afresh.
    if not existed and not rundir.saved_checkpoints(config.run_dir):
      shutil.rmtree(config.run_dir, ignore_errors=True)
    raise


def _train(config, strategy, chief, splits):
  if chief:
    rundir.prepare_run_dir(config, splits)
    rundir.check_writable(config.run_dir)
  keras.utils.set_random_seed(config.seed)
  with strategy.scope():
    model = build_model(config, splits.x_train)
    trainer = build_trainer(config, model)
    optimizer = build_optimizer(config, trainer)
    checkpoint, epoch_var = checkpoints.make_checkpoint(model, optimizer, trainer.rng)
    if chief:
      restored = checkpoints.restore_newest_readable(checkpoint, config.run_dir)
    else:
      restored = tf.train.latest_checkpoint(rundir.checkpoint_dir(config.run_dir))
      if restored:
        checkpoint.restore(restored).assert_existing_objects_matched()
    if not restored and config.init_from:
      source = checkpoints.initialise_from(model, config)
      if chief:
        rundir.record_environment(config.run_dir, initialised_from=source)
        print(f'{config.run_dir}: starting from {source["checkpoint"]} '
              f'(epoch {source["epoch"]} of {config.init_from})')
    compile_model(trainer, optimizer, config, len(splits.x_train))
  save_dir = distribute.scratch_dir(strategy, config.run_dir)
  manager = checkpoints.checkpoint_manager(checkpoint, save_dir)
  start, total = int(epoch_var.numpy()), config.total_epochs
  if start >= total:
    print(f'{config.run_dir}: already trained for {start} epochs (target {total}).')
    return trainer
  if start:
    print(f'{config.run_dir}: resuming at epoch {start + 1} of {total}.')

  callbacks = [keras.callbacks.LearningRateScheduler(config.learning_rate),
               callbacks_lib.StopOnSignal(), callbacks_lib.StopOnDivergence(config.run_dir)]
  summaries = None
  if chief:
    subset = data_lib.binarize_fixed(splits.x_train[:config.summary_subset],
                                     config.data.eval_seed)
    valid = (data_lib.binarize_fixed(splits.x_valid, config.data.eval_seed)
             if len(splits.x_valid) else None)
    summaries = callbacks_lib.TensorBoardSummaries(os.path.join(config.run_dir, 'tensorboard'),
                                     config.objective.k, subset, valid,
                                     config.data.eval_seed, config.run_dir)
    callbacks.append(summaries)
    checkpoints.restore_milestones(config.run_dir, config.milestones, start)
  callbacks.append(callbacks_lib.SaveCheckpoint(manager, epoch_var, config.milestones,
                                  config.run_dir if chief else None, summaries))
  try:
    fit_epochs(trainer, splits.x_train, config, start, total, callbacks, strategy)
  finally:
    if save_dir != config.run_dir:
      shutil.rmtree(save_dir, ignore_errors=True)
  return trainer

"""A training run: schedule, TensorBoard, checkpoints each epoch, the fit loop.

The run directory's layout lives in ``rundir.py``. Resuming: rerunning the
same command restores the newest readable checkpoint and continues at the
next epoch, at that epoch's learning rate, with the same data order (each
epoch's order is a stateless function of seed and epoch) and the same
per-step noise (a stateless function of seed and step), so an interrupted
and resumed run follows the uninterrupted one, under any ``--strategy``
(``distribute.py``): checkpoints hold one copy of each variable whatever the
number of replicas.

A non-finite training loss (checked after every compiled call), bound,
weight or optimizer variable (after every epoch) stops the run with a
``DivergenceError`` before anything is saved, so every checkpoint holds finite
values and the last good one stays the latest; milestone checkpoints are kept
for good at the end of each schedule stage (``rundir.py``).
"""

import os
import shutil
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from iwae_tf import cli
from iwae_tf import data as data_lib
from iwae_tf import distribute
from iwae_tf import memory
from iwae_tf import errors
from iwae_tf import metrics
from iwae_tf import model as model_lib
from iwae_tf import objectives
from iwae_tf import rundir
from iwae_tf import trainer as trainer_lib


class DivergenceError(errors.IWAEError):
  """Training produced a non-finite loss, bound or weight; nothing was saved."""


def check_finite(value, what, where, run_dir):
  """Raises ``DivergenceError`` unless ``value`` (a number, or a tensor whose
  every element must be finite) is finite.

  Args:
    value: the number or tensor to check.
    what: what it is (``'the training loss'``, ``'L_5'``, ``'weight p_x/...'``).
    where: when in the run (``'step 6300'``, ``'epoch 3'``).
    run_dir: the run directory, for the message.
  """
  if np.ndim(value) == 0:
    if np.isfinite(value):
      return
    state = f'is {float(value)}'
  else:
    bad = int(tf.size(value)) - int(tf.math.count_nonzero(tf.math.is_finite(value)))
    if not bad:
      return
    state = f'has {bad} non-finite values'
  saved = rundir.saved_checkpoints(run_dir)
  kept = (f'{saved[0]} (finite) stays the latest checkpoint, and rerunning resumes there '
          'into the same noise' if saved else 'no checkpoint had been written')
  raise DivergenceError(
      f'{where}: {what} {state}; stopped before saving: {kept}; try a lower '
      '--learning_rate or a larger --adam_epsilon in a new --run_dir')


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
  # measurably slowed training on 2 cores (0.74 vs 0.56 ms per k=1 step).
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


class TensorBoardSummaries(keras.callbacks.Callback):
  """Per-step training loss; per-epoch L_k, learning rate and active units.

  An epoch's scalars are measured (and checked finite) at its end, before the
  checkpoint is saved, but written only after it (by ``SaveCheckpoint``): an
  epoch that is redone on resuming, because the run stopped before its
  checkpoint, never appears twice in TensorBoard.

  Args:
    log_dir: TensorBoard directory.
    k: samples for the per-epoch bound.
    train_subset: ``[n, D]`` fixed-binarised training images.
    valid: ``[m, D]`` fixed-binarised validation images, or None.
    seed: seed of the per-epoch estimates (the same every epoch).
    run_dir: the run directory, named when the bound is not finite.
  """

  def __init__(self, log_dir, k, train_subset, valid, seed, run_dir):
    super().__init__()
    self.k, self.train_subset, self.valid, self.seed = k, train_subset, valid, seed
    self.run_dir = run_dir
    self.train_writer = tf.summary.create_file_writer(os.path.join(log_dir, 'train'))
    self.valid_writer = (tf.summary.create_file_writer(os.path.join(log_dir, 'validation'))
                         if valid is not None and len(valid) else None)
    self._estimator = None
    self._prev = (0, 0.0)
    self._pending = []  # (writer, tag, value, step) of the epoch not yet checkpointed

  def on_epoch_begin(self, epoch, logs=None):
    self._epoch_start = int(self.model.optimizer.iterations.numpy())
    self._prev = (0, 0.0)
    self._pending = []

  def _scalar(self, writer, tag, value, step):
    self._pending.append((writer, tag, float(value), int(step)))

  def write_pending(self):
    """Writes the scalars measured since the epoch began."""
    for writer in {w for w, *_ in self._pending}:
      with writer.as_default():
        for w, tag, value, step in self._pending:
          if w is writer:
            tf.summary.scalar(tag, value, step=step)
      writer.flush()
    self._pending = []

  def on_train_batch_end(self, batch, logs=None):
    # Keras reports the running mean over the epoch's optimisation steps;
    # recover the mean of the steps of this call, counted by the optimizer
    # (an epoch's last call may run fewer steps than the others).
    step = int(self.model.optimizer.iterations.numpy())
    n = step - self._epoch_start
    mean = float(logs['loss'])
    n0, mean0 = self._prev
    if n > n0:
      chunk_mean = (n * mean - n0 * mean0) / (n - n0)
      self._scalar(self.train_writer, 'loss_per_step', chunk_mean, step)
    self._prev = (n, mean)

  def on_epoch_end(self, epoch, logs=None):
    if self._estimator is None:
      self._estimator = metrics.Estimator(self.model.model)  # the Trainer's model
    step = epoch + 1  # epochs completed
    lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
    train = self.train_writer
    self._scalar(train, 'epoch_loss', logs['loss'], step)
    self._scalar(train, 'learning_rate', lr, step)
    lk = self._estimator.log_likelihood(self.train_subset, self.k, self.seed).mean()
    check_finite(lk, f'L_{self.k} on the training subset', f'epoch {step}', self.run_dir)
    self._scalar(train, f'L_{self.k}', lk, step)
    variances = metrics.posterior_mean_variances(self.model.model, self.train_subset, self.seed)
    for l, count in enumerate(metrics.active_units(variances)):
      self._scalar(train, f'active_units/h{l + 1}', count, step)
    if self.valid_writer is not None:
      lk = self._estimator.log_likelihood(self.valid, self.k, self.seed).mean()
      self._scalar(self.valid_writer, f'L_{self.k}', lk, step)


class Progress(keras.callbacks.Callback):
  """The run's progress in optimisation steps (Keras' own bar would count
  compiled calls of ``--steps_per_execution`` steps).

  ``verbose=1``: a line per epoch, updated in place after every call;
  ``verbose=2``: a line per epoch.
  """

  def __init__(self, total_epochs, steps_per_epoch, verbose=1, stream=None):
    super().__init__()
    self.total, self.steps, self.verbose = total_epochs, steps_per_epoch, verbose
    self.stream = stream or sys.stdout
    self._width = 0

  def _step(self):
    return int(self.model.optimizer.iterations.numpy()) - self._first_step

  def on_epoch_begin(self, epoch, logs=None):
    self._start = time.time()
    self._first_step = int(self.model.optimizer.iterations.numpy())
    self._epoch = epoch

  def on_train_batch_end(self, batch, logs=None):
    if self.verbose == 1:
      self._write(f'epoch {self._epoch + 1}/{self.total}: step {self._step()}/{self.steps}, '
                  f'loss {float(logs["loss"]):.4f}', end='')

  def on_epoch_end(self, epoch, logs=None):
    seconds, steps = time.time() - self._start, self._step()
    lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
    self._write(f'epoch {epoch + 1}/{self.total}: {steps} steps in {seconds:.1f} s '
                f'({1e3 * seconds / max(steps, 1):.2f} ms/step), loss '
                f'{float(logs["loss"]):.4f}, learning rate {lr:.3g}')

  def _write(self, line, end='\n'):
    # Overwrites the line updated in place (verbose=1), padding over its end.
    self.stream.write(('\r' if self._width else '') + line.ljust(self._width) + end)
    self._width = 0 if end else len(line)
    self.stream.flush()


class StopOnDivergence(keras.callbacks.Callback):
  """Raises ``DivergenceError`` as soon as the training loss is not finite
  (checked after every compiled call), or a weight or an optimizer variable
  (Adam's moments: an infinite second moment leaves its weight finite but
  frozen for good) is not finite at the end of an epoch. It precedes every
  callback that measures or saves."""

  def __init__(self, run_dir):
    super().__init__()
    self.run_dir = run_dir

  def on_train_batch_end(self, batch, logs=None):
    step = int(self.model.optimizer.iterations.numpy())
    check_finite(float(logs['loss']), 'the training loss', f'step {step}', self.run_dir)

  def on_epoch_end(self, epoch, logs=None):
    where = f'epoch {epoch + 1}'
    check_finite(float(logs['loss']), 'the epoch loss', where, self.run_dir)
    named = [('weight', v) for v in self.model.weights]
    named += [('optimizer variable', v) for v in self.model.optimizer.variables
              if keras.backend.is_float_dtype(v.dtype)]
    for what, v in named:
      check_finite(v, f'{what} {v.path}', where, self.run_dir)


class SaveCheckpoint(keras.callbacks.Callback):
  """Saves model, optimizer, generator state and the epoch count each epoch,
  keeps for good a copy of the checkpoints at ``milestones`` epochs in
  ``run_dir`` (None: no milestones, as for a non-chief worker), then writes
  the epoch's TensorBoard scalars (``summaries``, or None).

  Ctrl-C and SIGTERM are held back from the save to the scalars' writing, so
  that a signal leaves either both or neither: an epoch is logged once.
  """

  def __init__(self, manager, epoch_var, milestones=(), run_dir=None, summaries=None):
    super().__init__()
    self.manager, self.epoch_var = manager, epoch_var
    self.milestones, self.run_dir = set(milestones), run_dir
    self.summaries = summaries

  def on_epoch_end(self, epoch, logs=None):
    with cli.signals_held():
      self.epoch_var.assign(epoch + 1)
      prefix = self.manager.save(checkpoint_number=epoch + 1)
      if self.run_dir and epoch + 1 in self.milestones:
        rundir.keep_milestone(prefix, self.run_dir)
      if self.summaries is not None:
        self.summaries.write_pending()


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
    callbacks.append(Progress(last_epoch, steps, config.verbose))
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
    checkpoint, epoch_var = rundir.make_checkpoint(model, optimizer, trainer.rng)
    if chief:
      restored = rundir.restore_newest_readable(checkpoint, config.run_dir)
    else:
      restored = tf.train.latest_checkpoint(rundir.checkpoint_dir(config.run_dir))
      if restored:
        checkpoint.restore(restored).assert_existing_objects_matched()
    if not restored and config.init_from:
      source = rundir.initialise_from(model, config)
      if chief:
        rundir.record_environment(config.run_dir, initialised_from=source)
        print(f'{config.run_dir}: starting from {source["checkpoint"]} '
              f'(epoch {source["epoch"]} of {config.init_from})')
    compile_model(trainer, optimizer, config, len(splits.x_train))
  save_dir = distribute.scratch_dir(strategy, config.run_dir)
  manager = rundir.checkpoint_manager(checkpoint, save_dir)
  start, total = int(epoch_var.numpy()), config.total_epochs
  if start >= total:
    print(f'{config.run_dir}: already trained for {start} epochs (target {total}).')
    return trainer
  if start:
    print(f'{config.run_dir}: resuming at epoch {start + 1} of {total}.')

  callbacks = [keras.callbacks.LearningRateScheduler(
      config.learning_rate),
               StopOnDivergence(config.run_dir)]
  summaries = None
  if chief:
    subset = data_lib.binarize_fixed(splits.x_train[:config.summary_subset],
                                     config.data.eval_seed)
    valid = (data_lib.binarize_fixed(splits.x_valid, config.data.eval_seed)
             if len(splits.x_valid) else None)
    summaries = TensorBoardSummaries(os.path.join(config.run_dir, 'tensorboard'),
                                     config.objective.k, subset, valid,
                                     config.data.eval_seed, config.run_dir)
    callbacks.append(summaries)
    rundir.restore_milestones(config.run_dir, config.milestones, start)
  callbacks.append(SaveCheckpoint(manager, epoch_var, config.milestones,
                                  config.run_dir if chief else None, summaries))
  try:
    fit_epochs(trainer, splits.x_train, config, start, total, callbacks, strategy)
  finally:
    if save_dir != config.run_dir:
      shutil.rmtree(save_dir, ignore_errors=True)
  return trainer

"""What a training run does at the end of each compiled call and epoch.

A non-finite training loss (checked after every compiled call), bound,
weight or optimizer variable (after every epoch) stops the run with a
``DivergenceError`` before anything is saved, so every checkpoint holds finite
values and the last good one stays the latest (``StopOnDivergence``). Each
epoch's TensorBoard scalars are measured before its checkpoint and written
after it (``TensorBoardSummaries``, ``SaveCheckpoint``), with Ctrl-C and
SIGTERM held back in between, so that an epoch is logged exactly once;
milestone checkpoints are kept for good (``checkpoints.keep_milestone``). A
Ctrl-C or SIGTERM whose exception library code swallowed stops the run after
the compiled call it arrived in (``StopOnSignal``).
"""

import os
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from iwae_tf import checkpoints
from iwae_tf import cli
from iwae_tf import errors
from iwae_tf import metrics
from iwae_tf import rundir


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


class StopOnSignal(keras.callbacks.Callback):
  """Stops the run after the compiled call in which Ctrl-C or SIGTERM
  arrived, should library code have swallowed the signal's exception
  (``cli.raise_if_stopped``): a stop costs at most one call's steps."""

  def on_train_batch_end(self, batch, logs=None):
    cli.raise_if_stopped()


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
        checkpoints.keep_milestone(prefix, self.run_dir)
      if self.summaries is not None:
        self.summaries.write_pending()

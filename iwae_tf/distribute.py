"""Training on several devices or hosts with ``tf.distribute``.

Strategies (``--strategy``):

* ``default``: one device; the whole training step, several steps per call,
  is one XLA program (the fastest path on one device).
* ``mirrored``: ``tf.distribute.MirroredStrategy``, synchronous data
  parallelism over the local GPUs (or the devices named in ``--devices``).
* ``multiworker``: ``tf.distribute.MultiWorkerMirroredStrategy``, the same
  across hosts; each host runs the same command with its own ``TF_CONFIG``.

Global batch semantics. The configured batch size is the global batch: with
``R`` replicas each computes the objective on ``B / R`` of its rows, its
gradient is scaled by ``1 / R`` and the replicas' gradients are summed (by
the optimizer's all-reduce), which is the gradient of the mean over the
global batch, as on one device.

Randomness does not depend on the number of replicas. Every replica receives
the step's whole global batch of ``B`` grey-level images (int32, since
Keras all-reduces a first batch and collectives have no uint8 kernel; 63 KB
a step at ``B = 20``; the order is a stateless function of seed and epoch)
and takes rows ``[r*B/R, (r+1)*B/R)`` of it, where ``r`` is its
``replica_id_in_sync_group``. The binarisation noise ``[B, D]`` and the
sampling noise ``[k, B, d]`` are drawn for the global batch from the step's
stateless seed and sliced the same way. Replica ``r`` therefore computes
exactly what one device computes on those rows, and training on ``R``
devices follows training on one device up to floating-point summation
order (tested on two logical CPU devices, and with two worker processes).
On one device the images instead stay on the device and only indices are
fed (``trainer.Trainer.set_train_images``). The rows are taken in one place,
``trainer.Trainer._step``: the model and the objectives never see a replica.

A ``Shard`` ``(index, count)`` names this replica's slice of the batch axis.
"""

import json
import os
import tempfile
from typing import NamedTuple

import tensorflow as tf

from iwae_tf.config import STRATEGIES

from iwae_tf import errors


class StrategyError(errors.IWAEError):
  """A strategy that cannot be built as configured."""


class Shard(NamedTuple):
  """This replica's slice of the global batch: rows ``index*b:(index+1)*b``.

  ``index`` may be a scalar tensor (the replica id inside a step).
  """
  index: object
  count: int


_STRATEGIES = {}


def make_strategy(name, devices=()):
  """The named ``tf.distribute.Strategy``, built once per process.

  A process keeps one strategy per ``(name, devices)``: two strategies over
  the same devices would share collective-op instance keys, and their
  all-reduces could be matched with each other's (TensorFlow then aborts
  with a collective shape mismatch).

  Args:
    name: one of ``STRATEGIES``.
    devices: for ``mirrored``, device names (default: every local GPU, or the
      CPU if there is none).

  Raises:
    StrategyError: unknown name, bad devices, or a malformed ``TF_CONFIG``
      for ``multiworker``.
  """
  if name not in STRATEGIES:
    raise StrategyError(f'--strategy={name!r}: expected one of {", ".join(STRATEGIES)}')
  if name == 'default':
    return tf.distribute.get_strategy()
  key = (name, tuple(devices))
  if key not in _STRATEGIES:
    _STRATEGIES[key] = _build_strategy(name, devices)
  return _STRATEGIES[key]


def _check_devices(devices):
  """Raises ``StrategyError`` unless every named device exists here (a
  MirroredStrategy would otherwise place a missing GPU's replica elsewhere)."""
  present = set()
  for d in tf.config.list_logical_devices():
    spec = tf.DeviceSpec.from_string(d.name)
    present.add((spec.device_type.upper(), spec.device_index))
  for name in devices:
    try:
      spec = tf.DeviceSpec.from_string(name)
    except ValueError:
      raise StrategyError(f'--devices: {name!r} is not a device name such as /gpu:0') from None
    if spec.device_type is None or (spec.device_type.upper(), spec.device_index or 0) not in present:
      raise StrategyError(f'--devices: no device {name} on this machine (have: '
                          f'{", ".join(d.name for d in tf.config.list_logical_devices())})')


def _build_strategy(name, devices):
  if name == 'mirrored':
    _check_devices(devices)
    try:
      return tf.distribute.MirroredStrategy(list(devices) or None)
    except (ValueError, RuntimeError) as e:
      raise StrategyError(f'--devices={",".join(devices)}: {e}') from None
  tf_config = os.environ.get('TF_CONFIG')
  if tf_config:
    try:
      spec = json.loads(tf_config)
      spec['cluster'], spec['task']['type'], spec['task']['index']  # pylint: disable=pointless-statement
    except (ValueError, KeyError, TypeError) as e:
      raise StrategyError(f'TF_CONFIG: expected JSON with "cluster" and "task": '
                          f'{{"type", "index"}} ({e!r})') from None
  return tf.distribute.MultiWorkerMirroredStrategy()


def is_chief(strategy):
  """Whether this process writes the run directory (always, except on the
  non-chief workers of a multi-worker cluster)."""
  resolver = getattr(strategy, 'cluster_resolver', None)
  if resolver is None or not resolver.cluster_spec().as_dict():
    return True
  task_type, task_id = resolver.task_type, resolver.task_id
  if task_type == 'chief':
    return True
  return task_type == 'worker' and task_id == 0 and 'chief' not in resolver.cluster_spec().jobs


def scratch_dir(strategy, directory):
  """Where this process writes ``directory``'s files: the directory itself on
  the chief, a temporary one elsewhere (non-chief workers must take part in
  saving a checkpoint, but their copies are thrown away)."""
  if is_chief(strategy):
    return directory
  return tempfile.mkdtemp(prefix='iwae-worker-')


def replica_shard():
  """The current replica's ``Shard`` (``None`` outside a distributed step)."""
  if not tf.distribute.has_strategy() or tf.distribute.in_cross_replica_context():
    return None
  ctx = tf.distribute.get_replica_context()
  return Shard(ctx.replica_id_in_sync_group, ctx.num_replicas_in_sync)


def check_batch(global_batch, strategy):
  """Raises ``StrategyError`` unless the replicas split the batch evenly."""
  replicas = strategy.num_replicas_in_sync
  if global_batch % replicas:
    raise StrategyError(f'--batch_size={global_batch} is not divisible by the '
                        f'{replicas} replicas of the strategy')


def take_rows(full, shard, axis):
  """This shard's rows of ``full`` along ``axis`` (``full`` is global).

  Args:
    full: tensor whose ``axis`` has the global batch size ``count * b``.
    shard: a ``Shard`` or ``None`` (everything).
    axis: the batch axis (negative counts from the end).
  """
  if shard is None or shard.count == 1:
    return full
  rank = full.shape.rank
  axis %= rank
  shape = tf.shape(full)
  split = tf.concat([shape[:axis], [shard.count, shape[axis] // shard.count],
                     shape[axis + 1:]], 0)
  return tf.gather(tf.reshape(full, split), shard.index, axis=axis)


def replicated_batches(strategy, make_dataset):
  """A distributed dataset in which every replica receives every element.

  Args:
    strategy: the strategy.
    make_dataset: zero-argument function returning the ``tf.data.Dataset`` of
      global batches (the same on every worker).

  Returns:
    A ``tf.distribute.DistributedDataset``.
  """
  def per_worker(ctx):
    local = ctx.num_replicas_in_sync // ctx.num_input_pipelines
    # Local replicas take elements in turn, so each element is repeated once
    # per local replica: every replica sees the same sequence.
    dataset = make_dataset()
    if local > 1:
      dataset = dataset.flat_map(lambda x: tf.data.Dataset.from_tensors(x).repeat(local))
    return dataset.prefetch(tf.data.AUTOTUNE)

  options = tf.distribute.InputOptions(experimental_fetch_to_device=True)
  return strategy.distribute_datasets_from_function(per_worker, options)

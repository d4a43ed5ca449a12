"""Reading scalars back from a run's TensorBoard event files."""

import os

import tensorflow as tf
from tensorboard.compat.proto import event_pb2


def read_scalars(log_dir):
  """All scalars under ``log_dir``.

  Returns:
    dict ``'<writer>/<tag>' -> [(step, value), ...]`` sorted by step, where
    ``<writer>`` is the sub-directory (``train`` or ``validation``).
  """
  out = {}
  for root, _, files in os.walk(log_dir):
    for name in files:
      if 'tfevents' not in name:
        continue
      for record in tf.data.TFRecordDataset(os.path.join(root, name)):
        event = event_pb2.Event.FromString(record.numpy())
        for v in event.summary.value:
          key = f'{os.path.basename(root)}/{v.tag}'
          out.setdefault(key, []).append((event.step, float(tf.make_ndarray(v.tensor))))
  return {k: sorted(v) for k, v in out.items()}

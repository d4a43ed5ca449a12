"""MNIST: the copy embedded in this package, Keras' cache, or a user's files.

Sources, in order of precedence:
  * a user's file: an ``.npz`` in Keras' layout (``x_train``, ``y_train``,
    ``x_test``, ``y_test``) or a directory holding the four IDX files
    (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each optionally
    ``.gz``);
  * ``'keras'``: Keras' cache ``~/.keras/datasets/mnist.npz``;
  * by default, the copy of MNIST embedded in this package
    (``iwae_tf/datasets/mnist.npz``; MNIST by Y. LeCun, C. Cortes and
    C. J. C. Burges, CC BY-SA 3.0; see ``iwae_tf/datasets/NOTICE``).
"""

import gzip
import os
import struct
import zipfile

import numpy as np

from iwae_tf.datasets import common

EMBEDDED = os.path.join(os.path.dirname(__file__), 'mnist.npz')
KERAS_CACHE = os.path.join(os.path.expanduser('~'), '.keras', 'datasets', 'mnist.npz')
IDX_FILES = {
    'x_train': 'train-images-idx3-ubyte',
    'y_train': 'train-labels-idx1-ubyte',
    'x_test': 't10k-images-idx3-ubyte',
    'y_test': 't10k-labels-idx1-ubyte',
}


def portable_source(source):
  """A data source as run directories record it: the embedded copy by its
  place in the package (not this machine's path to it), a user's file as given."""
  if os.path.abspath(source) == os.path.abspath(EMBEDDED):
    return 'iwae_tf/datasets/mnist.npz (embedded)'
  return source


def resolve_path(path=None):
  """Maps ``None`` / ``'keras'`` / a path to the file or directory to read."""
  if path is None:
    if os.path.exists(EMBEDDED):
      return EMBEDDED
    if os.path.exists(KERAS_CACHE):
      return KERAS_CACHE
    raise common.DataError(f'{EMBEDDED}: embedded MNIST copy is missing and there is '
                    f'no Keras cache at {KERAS_CACHE}; pass --data')
  if path == 'keras':
    if not os.path.exists(KERAS_CACHE):
      raise common.DataError(f'{KERAS_CACHE}: no Keras MNIST cache here')
    return KERAS_CACHE
  if not os.path.exists(path):
    raise common.DataError(f'{path}: no such file or directory')
  return path


def load(path=None):
  """Loads and validates MNIST.

  Args:
    path: see ``resolve_path``.

  Returns:
    A ``common.ImageData``.

  Raises:
    DataError: for a missing, truncated or malformed file, or arrays of the
      wrong shape, dtype or value range.
  """
  path = resolve_path(path)
  arrays = _read_idx_dir(path) if os.path.isdir(path) else _read_npz(path)
  out = {}
  for split in ('train', 'test'):
    x, y = arrays[f'x_{split}'], arrays[f'y_{split}']
    out[f'x_{split}'] = common.check_images(path, f'x_{split}', x)
    out[f'y_{split}'] = common.check_labels(path, f'y_{split}', y, len(x))
  if out['x_train'].shape[1] != out['x_test'].shape[1]:
    raise common.DataError(f'{path}: x_train and x_test have different image sizes')
  return common.image_data(path, out)


def _read_npz(path):
  try:
    with np.load(path, allow_pickle=False) as f:
      missing = [k for k in IDX_FILES if k not in f.files]
      if missing:
        raise common.DataError(f'{path}: missing arrays {missing} (expected Keras layout '
                        'x_train, y_train, x_test, y_test)')
      return {k: f[k] for k in IDX_FILES}
  except common.DataError:
    raise
  except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
    raise common.DataError(f'{path}: not a readable .npz file ({e})') from None


def _read_idx_dir(path):
  arrays = {}
  for key, name in IDX_FILES.items():
    candidates = [os.path.join(path, name + ext) for ext in ('', '.gz')]
    found = [c for c in candidates if os.path.exists(c)]
    if not found:
      raise common.DataError(f'{candidates[0]}: missing IDX file (also tried .gz)')
    arrays[key] = read_idx(found[0])
  return arrays


def read_idx(path):
  """Reads one IDX file (optionally gzipped) of unsigned bytes."""
  try:
    opener = gzip.open if path.endswith('.gz') else open
    with opener(path, 'rb') as f:
      raw = f.read()
  except (OSError, EOFError) as e:
    raise common.DataError(f'{path}: cannot read ({e})') from None
  if len(raw) < 4:
    raise common.DataError(f'{path}: truncated IDX header')
  zero, dtype_code, ndim = struct.unpack('>HBB', raw[:4])
  if zero != 0 or dtype_code != 0x08 or ndim < 1:
    raise common.DataError(f'{path}: not an IDX file of unsigned bytes (bad magic number)')
  header = 4 + 4 * ndim
  if len(raw) < header:
    raise common.DataError(f'{path}: truncated IDX header')
  dims = struct.unpack(f'>{ndim}I', raw[4:header])
  expected = int(np.prod(dims))
  if len(raw) - header != expected:
    raise common.DataError(f'{path}: truncated or padded: {len(raw) - header} data bytes '
                    f'for dimensions {dims} ({expected} expected)')
  return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)

"""Data sets (a registry), MNIST loading, validation and binarisation.

A data set is one registered ``Dataset`` (name, loader, number of classes,
the paper's reference numbers); ``make_splits`` reads the one a
``DataConfig`` names. MNIST lives here; OMNIGLOT in ``omniglot.py``.

MNIST sources, in order of precedence:
  * a user's file: an ``.npz`` in Keras' layout (``x_train``, ``y_train``,
    ``x_test``, ``y_test``) or a directory holding the four IDX files
    (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each optionally
    ``.gz``);
  * ``'keras'``: Keras' cache ``~/.keras/datasets/mnist.npz``;
  * by default, the copy of MNIST embedded in this package
    (``iwae_tf/data/mnist.npz``; MNIST by Y. LeCun, C. Cortes and
    C. J. C. Burges, CC BY-SA 3.0; see ``iwae_tf/data/NOTICE``).

Binarisation: training uses dynamic binarisation (a fresh Bernoulli draw with
probability equal to the grey level / 255 each time a batch is used; done in
the model's compiled ``train_step``), or with ``binarization='fixed'`` one
binarisation of the training set made once with a recorded seed (the
training images then hold only 0 and 255, which the same step keeps as they
are: Bernoulli(0) and Bernoulli(1)). Evaluation data is binarised once, with
a fixed seed that is recorded with every result.

Images are flattened to ``[N, 784]``; intensities are kept as uint8.
"""

import dataclasses
import gzip
import hashlib
import os
import struct
import zipfile
from typing import Callable, Dict, Optional, Tuple

import numpy as np

from iwae_tf import errors

EMBEDDED = os.path.join(os.path.dirname(__file__), 'data', 'mnist.npz')
KERAS_CACHE = os.path.join(os.path.expanduser('~'), '.keras', 'datasets', 'mnist.npz')
IDX_FILES = {
    'x_train': 'train-images-idx3-ubyte',
    'y_train': 'train-labels-idx1-ubyte',
    'x_test': 't10k-images-idx3-ubyte',
    'y_test': 't10k-labels-idx1-ubyte',
}


class DataError(errors.IWAEError):
  """Data that cannot be used; the message names the file and the problem."""


@dataclasses.dataclass(frozen=True)
class ImageData:
  """A data set as flat uint8 arrays.

  Attributes:
    x_train: ``[N, D]`` uint8 grey levels 0..255.
    y_train: ``[N]`` int labels (digits 0..9 for MNIST, alphabets for OMNIGLOT).
    x_test, y_test: likewise for the test set.
    source: where it was read from.
    sha256: checksum of the arrays (not of the container).
  """
  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  source: str
  sha256: str


def portable_source(source):
  """A data source as run directories record it: the embedded copy by its
  place in the package (not this machine's path to it), a user's file as given."""
  if os.path.abspath(source) == os.path.abspath(EMBEDDED):
    return 'iwae_tf/data/mnist.npz (embedded)'
  return source


def resolve_path(path=None):
  """Maps ``None`` / ``'keras'`` / a path to the file or directory to read."""
  if path is None:
    if os.path.exists(EMBEDDED):
      return EMBEDDED
    if os.path.exists(KERAS_CACHE):
      return KERAS_CACHE
    raise DataError(f'{EMBEDDED}: embedded MNIST copy is missing and there is '
                    f'no Keras cache at {KERAS_CACHE}; pass --data')
  if path == 'keras':
    if not os.path.exists(KERAS_CACHE):
      raise DataError(f'{KERAS_CACHE}: no Keras MNIST cache here')
    return KERAS_CACHE
  if not os.path.exists(path):
    raise DataError(f'{path}: no such file or directory')
  return path


def load_mnist(path=None):
  """Loads and validates MNIST.

  Args:
    path: see ``resolve_path``.

  Returns:
    An ``ImageData``.

  Raises:
    DataError: for a missing, truncated or malformed file, or arrays of the
      wrong shape, dtype or value range.
  """
  path = resolve_path(path)
  arrays = _read_idx_dir(path) if os.path.isdir(path) else _read_npz(path)
  out = {}
  for split in ('train', 'test'):
    x, y = arrays[f'x_{split}'], arrays[f'y_{split}']
    out[f'x_{split}'] = check_images(path, f'x_{split}', x)
    out[f'y_{split}'] = _check_labels(path, f'y_{split}', y, len(x))
  if out['x_train'].shape[1] != out['x_test'].shape[1]:
    raise DataError(f'{path}: x_train and x_test have different image sizes')
  return image_data(path, out)


def image_data(path, arrays):
  """An ``ImageData`` of checked ``arrays`` read from ``path``, with their checksum."""
  digest = hashlib.sha256()
  for key in ('x_train', 'y_train', 'x_test', 'y_test'):
    digest.update(np.ascontiguousarray(arrays[key]).tobytes())
  return ImageData(source=os.path.abspath(path), sha256=digest.hexdigest(), **arrays)


def _read_npz(path):
  try:
    with np.load(path, allow_pickle=False) as f:
      missing = [k for k in IDX_FILES if k not in f.files]
      if missing:
        raise DataError(f'{path}: missing arrays {missing} (expected Keras layout '
                        'x_train, y_train, x_test, y_test)')
      return {k: f[k] for k in IDX_FILES}
  except DataError:
    raise
  except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
    raise DataError(f'{path}: not a readable .npz file ({e})') from None


def _read_idx_dir(path):
  arrays = {}
  for key, name in IDX_FILES.items():
    candidates = [os.path.join(path, name + ext) for ext in ('', '.gz')]
    found = [c for c in candidates if os.path.exists(c)]
    if not found:
      raise DataError(f'{candidates[0]}: missing IDX file (also tried .gz)')
    arrays[key] = read_idx(found[0])
  return arrays


def read_idx(path):
  """Reads one IDX file (optionally gzipped) of unsigned bytes."""
  try:
    opener = gzip.open if path.endswith('.gz') else open
    with opener(path, 'rb') as f:
      raw = f.read()
  except (OSError, EOFError) as e:
    raise DataError(f'{path}: cannot read ({e})') from None
  if len(raw) < 4:
    raise DataError(f'{path}: truncated IDX header')
  zero, dtype_code, ndim = struct.unpack('>HBB', raw[:4])
  if zero != 0 or dtype_code != 0x08 or ndim < 1:
    raise DataError(f'{path}: not an IDX file of unsigned bytes (bad magic number)')
  header = 4 + 4 * ndim
  if len(raw) < header:
    raise DataError(f'{path}: truncated IDX header')
  dims = struct.unpack(f'>{ndim}I', raw[4:header])
  expected = int(np.prod(dims))
  if len(raw) - header != expected:
    raise DataError(f'{path}: truncated or padded: {len(raw) - header} data bytes '
                    f'for dimensions {dims} ({expected} expected)')
  return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def check_images(path, key, x):
  x = np.asarray(x)
  if x.ndim == 3:
    x = x.reshape(len(x), -1)
  if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
    raise DataError(f'{path}: {key} has shape {x.shape}; expected [N, 28, 28] or [N, 784]')
  if x.dtype == np.uint8:
    return x
  if np.issubdtype(x.dtype, np.floating):
    if not np.all(np.isfinite(x)) or x.min() < 0 or x.max() > 1:
      raise DataError(f'{path}: {key} is float but not in [0, 1]')
    return np.round(x * 255).astype(np.uint8)
  if np.issubdtype(x.dtype, np.integer):
    if x.min() < 0 or x.max() > 255:
      raise DataError(f'{path}: {key} has values outside 0..255')
    return x.astype(np.uint8)
  raise DataError(f'{path}: {key} has dtype {x.dtype}; expected uint8 or float in [0, 1]')


def _check_labels(path, key, y, n, num_classes=10):
  y = np.asarray(y)
  if y.ndim != 1 or len(y) != n:
    raise DataError(f'{path}: {key} has shape {y.shape}; expected [{n}] to match the images')
  if not np.issubdtype(y.dtype, np.integer) or (n and (y.min() < 0 or y.max() >= num_classes)):
    raise DataError(f'{path}: {key} must be integer labels 0..{num_classes - 1}')
  return y.astype(np.int64)


@dataclasses.dataclass(frozen=True)
class Splits:
  """Training, validation and test arrays used by a run.

  ``x_*`` are uint8 ``[N, D]``; validation may be empty.
  """
  x_train: np.ndarray
  y_train: np.ndarray
  x_valid: np.ndarray
  y_valid: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  sha256: str
  source: str


@dataclasses.dataclass(frozen=True)
class Dataset:
  """A registered data set.

  Attributes:
    name: ``--dataset`` value.
    load: ``path -> ImageData`` (``path`` None: the data set's default source).
    paper_nll: the paper's test NLL, ``{(objective, latents): {k: nll}}``,
      latents as the tables write them (``'50'``, ``'100-50'``): only the
      paper's own architectures have its numbers.
    where: where users get the data, for the README and error messages.
  """
  name: str
  load: Callable[[Optional[str]], ImageData]
  paper_nll: Dict[Tuple[str, str], Dict[int, float]]
  where: str = ''


def _load_omniglot(path):
  from iwae_tf import omniglot  # pylint: disable=import-outside-toplevel
  return omniglot.load_omniglot(path)


MNIST_PAPER_NLL = {  # Burda et al. 2016, Table 1: MNIST test NLL after 3280 epochs.
    ('vae', '50'): {1: 86.76, 5: 86.47, 50: 86.35},  # 1 stochastic layer
    ('iwae', '50'): {1: 86.76, 5: 85.54, 50: 84.78},
    ('vae', '100-50'): {1: 85.33, 5: 85.01, 50: 84.78},  # 2 stochastic layers
    ('iwae', '100-50'): {1: 85.33, 5: 83.89, 50: 82.90},
}

DATASETS = {
    'mnist': Dataset('mnist', load_mnist, MNIST_PAPER_NLL, 'embedded in this package'),
    # The paper's OMNIGLOT numbers are not filled in: they could not be
    # confirmed from the paper's text here (see README).
    'omniglot': Dataset('omniglot', _load_omniglot, {},
                        "chardata.mat, from the original IWAE code's datasets/OMNIGLOT/"),
}


def get_dataset(name):
  if name not in DATASETS:
    raise DataError(f'unknown dataset {name!r}; choose from {", ".join(DATASETS)}')
  return DATASETS[name]


def make_splits(config):
  """Loads the data named by a ``DataConfig``, splits off validation and, for
  ``binarization='fixed'``, binarises the training images once.

  Validation: the last ``validation_size`` training images, after shuffling
  the training set with ``shuffle_seed`` when one is given (the original
  code's OMNIGLOT split: ``validation_size=1345, shuffle_seed=123``).
  """
  m = get_dataset(config.dataset).load(config.path)
  n_valid = config.validation_size
  if n_valid < 0 or n_valid >= len(m.x_train):
    raise DataError(f'{m.source}: validation_size={n_valid} must be in '
                    f'[0, {len(m.x_train)})')
  x_all, y_all = m.x_train, m.y_train
  if config.shuffle_seed is not None:
    perm = np.random.RandomState(config.shuffle_seed).permutation(len(x_all))
    x_all, y_all = x_all[perm], y_all[perm]
  cut = len(x_all) - n_valid
  x_train, y_train = x_all[:cut], y_all[:cut]
  if config.limit_train:
    x_train, y_train = x_train[:config.limit_train], y_train[:config.limit_train]
  if config.binarization == 'fixed':
    x_train = (binarize_fixed(x_train, config.train_binarization_seed) * 255).astype(np.uint8)
  return Splits(x_train=x_train, y_train=y_train, x_valid=x_all[cut:],
                y_valid=y_all[cut:], x_test=m.x_test, y_test=m.y_test,
                sha256=m.sha256, source=m.source)


def binarize_fixed(x, seed):
  """One fixed Bernoulli binarisation of uint8 grey levels.

  Args:
    x: ``[N, D]`` uint8.
    seed: integer seed (record it with any result).

  Returns:
    ``[N, D]`` float32 array of 0s and 1s.
  """
  rng = np.random.Generator(np.random.PCG64(seed))
  return (rng.random(x.shape) < x / 255.0).astype(np.float32)


def mean_pixel_logit(x_train, clip=1e-3):
  """Logit of each pixel's mean training intensity: the output bias init.

  Means are clipped to ``[clip, 1 - clip]`` so that always-black pixels get a
  large negative, finite logit.
  """
  p = np.clip(x_train.astype(np.float64).mean(axis=0) / 255.0, clip, 1 - clip)
  return (np.log(p) - np.log1p(-p)).astype(np.float32)

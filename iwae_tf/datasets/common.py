"""What every data set shares: the arrays' form and checks, and binarisation.

Images are flattened to ``[N, D]`` uint8 grey levels. Training uses dynamic
binarisation (a fresh Bernoulli draw with probability equal to the grey level
/ 255 each time a batch is used; done in the model's compiled
``train_step``), or with ``binarization='fixed'`` one binarisation of the
training set made once with a recorded seed (the training images then hold
only 0 and 255, which the same step keeps as they are: Bernoulli(0) and
Bernoulli(1)). Evaluation data is binarised once (``binarize_fixed``), with a
fixed seed that is recorded with every result.
"""

import dataclasses
import hashlib
import os

import numpy as np

from iwae_tf import errors


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


def image_data(path, arrays):
  """An ``ImageData`` of checked ``arrays`` read from ``path``, with their checksum."""
  digest = hashlib.sha256()
  for key in ('x_train', 'y_train', 'x_test', 'y_test'):
    digest.update(np.ascontiguousarray(arrays[key]).tobytes())
  return ImageData(source=os.path.abspath(path), sha256=digest.hexdigest(), **arrays)


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


def check_labels(path, key, y, n, num_classes=10):
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

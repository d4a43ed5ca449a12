"""OMNIGLOT as the IWAE paper used it: the 28x28 ``chardata.mat``.

The file that came with the original IWAE code (``datasets/OMNIGLOT/
chardata.mat``; OMNIGLOT by B. Lake, R. Salakhutdinov and J. Tenenbaum) is a
MATLAB file whose arrays ``data`` and ``testdata`` hold pixels x examples
(784 x 24,345 and 784 x 8,070), each image's 784 values in Fortran
(column-major) order with values in [0, 1], and ``target``/``testtarget``
the one-hot alphabets (50 x examples). It cannot be shipped or downloaded
here: users pass its path with ``--data``.

Images come back row-major (the transpose of the column-major layout) as
uint8 grey levels, labels as the alphabet's index; binarisation is then the
same as for MNIST (``common.py``). The original code's validation split is the
training set shuffled with ``numpy.random.RandomState(123)`` and its last
1,345 images held out (``--validation_size=1345 --shuffle_seed=123``).
"""

import os
import zipfile

import numpy as np

from iwae_tf.datasets import common

SIDE = 28
ARRAYS = {'x_train': 'data', 'x_test': 'testdata', 'y_train': 'target', 'y_test': 'testtarget'}
NUM_ALPHABETS = 50


def load(path):
  """Reads and checks ``chardata.mat``.

  Args:
    path: the file (no default: it cannot be shipped).

  Returns:
    ``common.ImageData`` with ``[N, 784]`` uint8 images and alphabet labels.

  Raises:
    common.DataError: a missing, truncated or malformed file, naming the file
      and what is wrong.
  """
  if path is None:
    raise common.DataError('--dataset=omniglot needs --data=PATH/chardata.mat (the 28x28 '
                             'OMNIGLOT file of the original IWAE code)')
  if not os.path.isfile(path):
    raise common.DataError(f'{path}: no such file')
  import scipy.io  # pylint: disable=import-outside-toplevel
  try:
    raw = scipy.io.loadmat(path)
  except (ValueError, TypeError, OSError, EOFError, zipfile.BadZipFile, NotImplementedError) as e:
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    raise common.DataError(f'{path}: not a readable MATLAB file ({first})') from None
  missing = [name for name in ARRAYS.values() if name not in raw]
  if missing:
    raise common.DataError(f'{path}: missing arrays {missing} (expected data, testdata, '
                             'target, testtarget)')
  out = {}
  for split in ('train', 'test'):
    pixels = np.asarray(raw[ARRAYS[f'x_{split}']])
    if pixels.ndim != 2 or pixels.shape[0] != SIDE * SIDE:
      raise common.DataError(f'{path}: {ARRAYS[f"x_{split}"]} has shape {pixels.shape}; '
                               f'expected [{SIDE * SIDE}, examples]')
    # Column-major images -> row-major rows.
    images = pixels.T.reshape(-1, SIDE, SIDE).transpose(0, 2, 1).reshape(-1, SIDE * SIDE)
    out[f'x_{split}'] = common.check_images(path, ARRAYS[f'x_{split}'], images)
    target = np.asarray(raw[ARRAYS[f'y_{split}']])
    if target.ndim != 2 or target.shape != (NUM_ALPHABETS, len(images)):
      raise common.DataError(f'{path}: {ARRAYS[f"y_{split}"]} has shape {target.shape}; '
                               f'expected [{NUM_ALPHABETS}, {len(images)}] (one-hot alphabets)')
    out[f'y_{split}'] = np.argmax(target, axis=0).astype(np.int64)
  return common.image_data(path, out)

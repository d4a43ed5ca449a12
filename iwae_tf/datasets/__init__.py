"""Data sets: a registry of loaders, and the splits a run uses.

A data set is one registered ``Dataset`` (name, loader, where users get it);
``make_splits`` reads the one a ``DataConfig`` names and splits off
validation. The loaders are ``mnist.py`` and ``omniglot.py``; what they share
(the arrays' form and checks, binarisation) is ``common.py``. The paper's
numbers for each data set are in ``paper.py``.
"""

import dataclasses
from typing import Callable, Optional

import numpy as np

from iwae_tf.datasets import common
from iwae_tf.datasets import mnist
from iwae_tf.datasets import omniglot

# The package's public names.
DataError = common.DataError
ImageData = common.ImageData
Splits = common.Splits
binarize_fixed = common.binarize_fixed
mean_pixel_logit = common.mean_pixel_logit


@dataclasses.dataclass(frozen=True)
class Dataset:
  """A registered data set.

  Attributes:
    name: ``--dataset`` value.
    load: ``path -> ImageData`` (``path`` None: the data set's default source).
    where: where users get the data, for the README and error messages.
  """
  name: str
  load: Callable[[Optional[str]], ImageData]
  where: str = ''


DATASETS = {
    'mnist': Dataset('mnist', mnist.load, 'embedded in this package'),
    'omniglot': Dataset('omniglot', omniglot.load,
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
  return common.Splits(x_train=x_train, y_train=y_train, x_valid=x_all[cut:],
                y_valid=y_all[cut:], x_test=m.x_test, y_test=m.y_test,
                sha256=m.sha256, source=m.source)

"""The trained models of this reproduction, installed with the package.

Each folder here is an exported run (``evaluate.py --export``): its
``config.json``, ``environment.json``, the model's weights only
(``checkpoints/``), and ``measured.json``, the test NLL measured on the run
it came from (``results/<name>/``).

Example::

  from iwae_tf import pretrained
  pretrained.list()                          # {'iwae_k5_50_paper': 85.14, ...}
  m = pretrained.load('iwae_k5_50_paper')
  x = pretrained.test_images(100)            # [100, 784] binarised test digits
  ll = m.log_likelihood(x)                   # [100] log p(x), K = 5000
  means = m.sample(64)                       # [64, 784] Bernoulli means
  codes = m.encode(x)                        # per stochastic layer, [100, d_l]
"""

import dataclasses
import json
import os

import numpy as np
import tensorflow as tf

from iwae_tf import rundir

DIR = os.path.dirname(os.path.abspath(__file__))
MEASURED = 'measured.json'


class PretrainedError(Exception):
  """No such pretrained model."""


def names():
  """The shipped models' names."""
  return sorted(n for n in os.listdir(DIR) if os.path.exists(rundir.config_path(os.path.join(DIR, n))))


def list():  # noqa: A001  (the name the package's users ask for)
  """``{name: committed test NLL (K = 5000, full test set)}`` of the shipped models."""
  out = {}
  for name in names():
    with open(os.path.join(DIR, name, MEASURED)) as f:
      out[name] = json.load(f)['test_nll']
  return out


def path(name_or_path):
  """A shipped model's folder, or ``name_or_path`` itself if it is a folder."""
  if os.path.isdir(name_or_path):
    return name_or_path
  candidate = os.path.join(DIR, name_or_path)
  if not os.path.exists(rundir.config_path(candidate)):
    raise PretrainedError(f'{name_or_path}: no such pretrained model or folder; shipped: '
                          f'{", ".join(names())}')
  return candidate


@dataclasses.dataclass
class Pretrained:
  """A trained model, ready to measure, sample and encode.

  Attributes:
    model: the ``model.IWAEModel``.
    config: its ``config.TrainConfig``.
    epoch: the epochs it was trained for.
  """
  model: object
  config: object
  epoch: int
  _estimators: dict = dataclasses.field(default_factory=dict, repr=False)

  def log_likelihood(self, x, k=5000, seed=0, batch_size=100):
    """Per-image ``log (1/k) sum_i w_i`` (the paper's estimate of log p(x)).

    Args:
      x: ``[N, 784]`` binary images (floats of 0 and 1).
      k: importance samples.
      seed: seed of the samples.

    Returns:
      ``[N]`` float64.
    """
    from iwae_tf import metrics  # pylint: disable=import-outside-toplevel
    if batch_size not in self._estimators:  # one compiled estimate per batch size
      self._estimators[batch_size] = metrics.Estimator(self.model, batch_size=batch_size)
    return self._estimators[batch_size].log_likelihood(np.asarray(x, np.float32), k, seed)

  def sample(self, n, seed=0):
    """``[n, 784]`` Bernoulli means of ``n`` ancestral samples from the model."""
    return self.model.sample_means(n, tf.constant([seed, 0], tf.int32)).numpy()

  def encode(self, x, seed=0):
    """Posterior means ``E_q[h_l]``, per stochastic layer, ``[N, d_l]`` each."""
    means = self.model.posterior_means(tf.constant(np.asarray(x, np.float32)),
                                       tf.constant([seed, 0], tf.int32))
    return [m.numpy() for m in means]


def load(name_or_path):
  """A shipped model by name (``list()``), or any run or export folder."""
  from iwae_tf import checkpoints  # pylint: disable=import-outside-toplevel
  config, model, _, epoch = checkpoints.restore(path(name_or_path))
  return Pretrained(model, config, epoch)


def test_images(n=None):
  """The first ``n`` MNIST test images, binarised once as the evaluation does
  (``DataConfig.eval_seed``): the images the committed results measured."""
  from iwae_tf import config, datasets as data  # pylint: disable=import-outside-toplevel
  return data.binarize_fixed(data.mnist.load().x_test[:n], config.DataConfig.eval_seed)

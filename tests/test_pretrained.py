"""The committed pretrained models (``pretrained/<name>/``) under today's code.

Each must restore into the model that today's code builds from its
``config.json``, hold the model's weights only (no optimizer state, under
2 MB), and reproduce its committed measurement: the per-image K = 5000
estimates of the first test images (the first evaluation batch: same
binarisation, same noise) equal those in ``results/<name>/``. A change that
renames a weight, alters the model's maths or the evaluation's random streams
fails here, before the README's numbers silently stop matching the shipped
weights.
"""

import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from iwae_tf import data as data_lib
from iwae_tf import evaluation, metrics, rundir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRETRAINED = sorted(glob.glob(os.path.join(ROOT, 'pretrained', '*', 'config.json')))
IMAGES = 100  # evaluate.py's default batch: the first compiled call's noise


@pytest.mark.parametrize('name', [os.path.basename(os.path.dirname(p)) for p in PRETRAINED])
def test_pretrained_model_reproduces_its_committed_result(name):
  run_dir = os.path.join(ROOT, 'pretrained', name)
  config, model, path, epoch = evaluation.restore(run_dir)
  names = [n for n, _ in tf.train.list_variables(path)]
  assert names and not any(n.startswith('optimizer') for n in names)
  assert sum(os.path.getsize(f) for f in glob.glob(path + '.*')) < 2e6
  result = rundir.result_path(run_dir, epoch, 5000, results_root=os.path.join(ROOT, 'results'))
  assert os.path.exists(result), f'{name}: no committed result for epoch {epoch}'
  with open(result) as f:
    committed = json.load(f)
  assert committed['epoch'] == epoch
  same = json.loads(json.dumps(config.to_dict()))  # tuples as JSON lists
  for part in ('model', 'objective', 'data', 'optim'):  # all but where it lives
    assert committed['config'][part] == same[part], part
  with np.load(rundir.per_image_path(result)) as f:
    expected = f['test_log_likelihood'][:IMAGES]
  splits = data_lib.make_splits(config.data)
  assert splits.sha256 == committed['data_sha256']
  x = data_lib.binarize_fixed(splits.x_test[:IMAGES], committed['eval_binarization_seed'])
  got = metrics.Estimator(model).log_likelihood(x, 5000, committed['seed'])
  np.testing.assert_allclose(got, expected, atol=1e-2)


def test_there_is_a_pretrained_model():
  # Guards the parametrised test above against finding nothing to check.
  assert PRETRAINED

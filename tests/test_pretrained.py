"""The committed pretrained models (``iwae_tf/pretrained/<name>/``) under today's code.

Each must restore into the model that today's code builds from its
``config.json``, hold the model's weights only (no optimizer state: the
files are about the size of its float32 weights, where Adam's two slots would
triple them), and reproduce its committed measurement: the per-image K = 5000
estimates of the first test images (the first evaluation batch: same
binarisation, same noise) equal those in ``results/<name>/``. A change that
renames a weight, alters the model's maths or the evaluation's random streams
fails here, before the README's numbers silently stop matching the shipped
weights.
"""

import glob
import json
import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import tensorflow as tf

from iwae_tf import checkpoints
from iwae_tf import datasets as data_lib
from iwae_tf import pretrained, rundir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRETRAINED = sorted(glob.glob(os.path.join(ROOT, rundir.PRETRAINED_ROOT, '*', 'config.json')))
IMAGES = 100  # evaluate.py's default batch: the first compiled call's noise


@pytest.mark.parametrize('name', [os.path.basename(os.path.dirname(p)) for p in PRETRAINED])
def test_pretrained_model_reproduces_its_committed_result(name):
  run_dir = os.path.join(ROOT, rundir.PRETRAINED_ROOT, name)
  config, model, path, epoch = checkpoints.restore(run_dir)
  names = [n for n, _ in tf.train.list_variables(path)]
  assert names and not any(n.startswith('optimizer') for n in names)
  weights = 4 * model.count_params()  # float32
  assert sum(os.path.getsize(f) for f in glob.glob(path + '.*')) < 1.1 * weights + 2**16
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
  np.testing.assert_array_equal(x, pretrained.test_images(IMAGES))
  # The library call measures what the committed result measured.
  loaded = pretrained.load(name)
  assert loaded.epoch == epoch and loaded.config.model == config.model
  got = loaded.log_likelihood(x, k=5000, seed=committed['seed'])
  np.testing.assert_allclose(got, expected, atol=1e-2)
  measured = json.load(open(os.path.join(run_dir, pretrained.MEASURED)))
  assert measured['test_nll'] == round(committed['test']['nll']['mean'], 2)
  assert pretrained.list()[name] == measured['test_nll']
  env = json.load(open(os.path.join(run_dir, 'environment.json')))
  assert not any('/work/' in str(v) or '/tmp/' in str(v) for v in env.values())


def test_samples_and_codes_of_a_pretrained_model():
  m = pretrained.load(pretrained.names()[0])
  a, b = m.sample(64, seed=0), m.sample(64, seed=1)
  assert a.shape == (64, 784) and np.all((a > 0) & (a < 1))
  np.testing.assert_array_equal(a, m.sample(64, seed=0))
  assert not np.allclose(a, b)
  codes = m.encode(pretrained.test_images(10))
  assert [c.shape for c in codes] == [(10, d) for d in m.config.model.latents]
  with pytest.raises(pretrained.PretrainedError, match='no such pretrained model'):
    pretrained.load('no_such_model')


def test_the_models_install_with_the_package(tmp_path):
  """pip builds a wheel holding every shipped model's files."""
  source = tmp_path / 'source'  # a copy: the build writes build/ and *.egg-info beside it
  shutil.copytree(os.path.join(ROOT, 'iwae_tf'), source / 'iwae_tf',
                  ignore=shutil.ignore_patterns('__pycache__'))
  for name in ('pyproject.toml', 'README.md'):
    shutil.copy(os.path.join(ROOT, name), source)
  p = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation',
                      '--quiet', '-w', str(tmp_path / 'wheel'), str(source)], capture_output=True,
                     text=True, timeout=600, cwd=tmp_path)
  assert p.returncode == 0, p.stderr
  wheel, = glob.glob(str(tmp_path / 'wheel' / '*.whl'))
  files = set(zipfile.ZipFile(wheel).namelist())
  for config_json in PRETRAINED:
    folder = os.path.relpath(os.path.dirname(config_json), ROOT)
    shipped = {os.path.relpath(f, ROOT) for f in glob.glob(os.path.join(ROOT, folder, '**'),
                                                        recursive=True) if os.path.isfile(f)}
    assert shipped and shipped <= files, sorted(shipped - files)
  assert 'iwae_tf/pretrained/__init__.py' in files and 'iwae_tf/datasets/mnist.npz' in files


def test_there_is_a_pretrained_model():
  # Guards the parametrised test above against finding nothing to check.
  assert PRETRAINED

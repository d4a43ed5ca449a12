"""OMNIGLOT's file format, fixed binarisation, --init_from and --schedule=continue."""

import json
import os

import numpy as np
import pytest
import scipy.io
import tensorflow as tf

from iwae_tf import checkpoints
from iwae_tf import config
from iwae_tf import datasets as data
from iwae_tf import paper
from iwae_tf import rundir
from iwae_tf import training
from iwae_tf.datasets import omniglot
from helpers import tiny_config, weights



def write_chardata(path, n_train=60, n_test=20, seed=0, drop=()):
  """A small file in chardata.mat's layout: pixels x examples, each image's
  values column-major, in [0, 1]; one-hot alphabets, 50 x examples."""
  rng = np.random.default_rng(seed)
  images = {split: rng.random((n, 28, 28)) for split, n in (('train', n_train), ('test', n_test))}
  labels = {split: rng.integers(0, 50, len(images[split])) for split in images}
  arrays = {}
  for split, name, target in (('train', 'data', 'target'), ('test', 'testdata', 'testtarget')):
    x = images[split]
    arrays[name] = np.stack([img.flatten(order='F') for img in x], axis=1)  # [784, N]
    arrays[target] = np.eye(50)[labels[split]].T  # [50, N]
  for name in drop:
    del arrays[name]
  scipy.io.savemat(path, arrays)
  return images, labels


def test_omniglot_reads_the_original_layout(tmp_path):
  path = str(tmp_path / 'chardata.mat')
  images, labels = write_chardata(path)
  m = omniglot.load(path)
  assert m.x_train.shape == (60, 784) and m.x_test.shape == (20, 784) and m.x_train.dtype == np.uint8
  # Row-major images again: pixel (row i, column j) of the first image.
  np.testing.assert_array_equal(m.x_train.reshape(-1, 28, 28)[0],
                                np.round(images['train'][0] * 255).astype(np.uint8))
  np.testing.assert_array_equal(m.y_train, labels['train'])
  np.testing.assert_array_equal(m.y_test, labels['test'])
  assert len(m.sha256) == 64


def test_omniglot_split_and_binarisation(tmp_path):
  path = str(tmp_path / 'chardata.mat')
  write_chardata(path)
  full = omniglot.load(path)
  s = data.make_splits(config.DataConfig(path=path, dataset='omniglot', validation_size=13,
                                         shuffle_seed=123))
  perm = np.random.RandomState(123).permutation(60)
  np.testing.assert_array_equal(s.x_train, full.x_train[perm[:47]])
  np.testing.assert_array_equal(s.x_valid, full.x_train[perm[47:]])
  fixed = data.make_splits(config.DataConfig(path=path, dataset='omniglot',
                                             binarization='fixed', train_binarization_seed=4))
  assert set(np.unique(fixed.x_train)) <= {0, 255}
  np.testing.assert_array_equal(fixed.x_train, data.binarize_fixed(full.x_train, 4) * 255)
  again = data.make_splits(config.DataConfig(path=path, dataset='omniglot', binarization='fixed',
                                             train_binarization_seed=4))
  np.testing.assert_array_equal(fixed.x_train, again.x_train)  # once, with a recorded seed


@pytest.mark.parametrize('damage,expect', [
    ('missing', 'no such file'), ('no_testdata', r"missing arrays \['testdata'\]"),
    ('truncated', 'not a readable MATLAB file'), ('shape', 'expected \\[784, examples\\]'),
    ('range', 'not in \\[0, 1\\]'), ('none', 'needs --data')])
def test_omniglot_bad_files_are_one_line_errors(tmp_path, damage, expect):
  path = str(tmp_path / 'chardata.mat')
  if damage == 'no_testdata':
    write_chardata(path, drop=('testdata',))
  elif damage == 'truncated':
    write_chardata(path)
    raw = open(path, 'rb').read()
    open(path, 'wb').write(raw[:len(raw) // 3])
  elif damage == 'shape':
    scipy.io.savemat(path, {'data': np.zeros((100, 5)), 'testdata': np.zeros((100, 5)),
                            'target': np.zeros((50, 5)), 'testtarget': np.zeros((50, 5))})
  elif damage == 'range':
    scipy.io.savemat(path, {'data': np.full((784, 5), 2.0), 'testdata': np.zeros((784, 5)),
                            'target': np.eye(50)[:, :5], 'testtarget': np.eye(50)[:, :5]})
  with pytest.raises(data.DataError, match=expect) as e:
    omniglot.load(None if damage == 'none' else path)
  assert '\n' not in str(e.value)
  if damage not in ('none', 'missing'):
    assert path in str(e.value)


def test_registry_names_are_the_flag_choices():
  assert config.DATASETS == tuple(data.DATASETS) == ('mnist', 'omniglot')
  assert paper.nll('mnist', 'iwae', '50', 5) == 85.54
  assert paper.nll('omniglot', 'iwae', '50', 5) is None  # not confirmed: left out


def test_init_from_restores_the_source_weights_and_leaves_it_untouched(tmp_path):
  source = tmp_path / 'vae'
  trained = training.train(tiny_config(source, objective='vae', k=1, epochs=2))
  before = {f: open(os.path.join(dirpath, f), 'rb').read()
            for dirpath, _, files in os.walk(source) for f in files}
  cfg = tiny_config(tmp_path / 'iwae', objective='iwae', k=5, epochs=1)
  cfg = config.TrainConfig(**{**cfg.__dict__, 'init_from': str(source)})
  model = training.build_model(cfg)
  got = checkpoints.initialise_from(model, cfg)
  assert got['epoch'] == 2 and got['checkpoint'].endswith('ckpt-2')
  assert got['objective']['name'] == 'vae'
  for a, b in zip(weights(model), weights(trained)):
    np.testing.assert_array_equal(a, b)  # exactly the source's weights
  continued = training.train(cfg)
  assert any(not np.allclose(a, b) for a, b in zip(weights(continued), weights(trained)))
  after = {f: open(os.path.join(dirpath, f), 'rb').read()
           for dirpath, _, files in os.walk(source) for f in files}
  assert after == before  # the source run is untouched
  saved = json.loads((tmp_path / 'iwae' / 'config.json').read_text())
  assert saved['init_from'] == str(source)
  env = json.loads((tmp_path / 'iwae' / 'environment.json').read_text())
  assert env['initialised_from']['epoch'] == 2
  # A rerun resumes its own checkpoint instead of starting again from the source.
  cfg2 = config.TrainConfig(**{**cfg.__dict__, 'epochs': 2})
  training.train(cfg2)
  assert tf.train.latest_checkpoint(str(tmp_path / 'iwae' / 'checkpoints')).endswith('ckpt-2')


def test_init_from_refuses_another_architecture(tmp_path):
  training.train(tiny_config(tmp_path / 'src', epochs=1))
  cfg = tiny_config(tmp_path / 'new', latents=(4,))
  cfg = config.TrainConfig(**{**cfg.__dict__, 'init_from': str(tmp_path / 'src')})
  with pytest.raises(rundir.RunDirError, match='architecture'):
    training.train(cfg)


def test_continue_schedule_and_names():
  cfg = config.TrainConfig(optim=config.OptimConfig(schedule='continue'), init_from='runs/x')
  assert cfg.total_epochs == 2187 == paper.CONTINUE_EPOCHS
  assert [cfg.learning_rate(e) for e in (0, 100, 2186)] == pytest.approx([1e-4] * 3)
  assert cfg.milestones[-1] == 2187
  assert rundir.run_name(cfg) == 'iwae_k5_50_continue_from_x'
  omni = config.TrainConfig(data=config.DataConfig(dataset='omniglot', binarization='fixed'))
  assert rundir.run_name(omni) == 'omniglot_iwae_k5_50_paper_fixed'
  assert rundir.run_name(config.TrainConfig()) == 'iwae_k5_50_paper'

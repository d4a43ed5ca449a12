"""Tests of iwae_tf.data: the embedded copy, user files and their errors."""

import gzip
import struct

import numpy as np
import pytest

from iwae_tf import config
from iwae_tf import datasets as data


def _arrays(n_train=30, n_test=10, seed=0):
  rng = np.random.default_rng(seed)
  return dict(x_train=rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              y_train=rng.integers(0, 10, n_train).astype(np.uint8),
              x_test=rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              y_test=rng.integers(0, 10, n_test).astype(np.uint8))


def _write_idx(path, array, gz=False):
  header = struct.pack('>HBB', 0, 0x08, array.ndim) + struct.pack(f'>{array.ndim}I', *array.shape)
  payload = header + array.astype(np.uint8).tobytes()
  with (gzip.open if gz else open)(path, 'wb') as f:
    f.write(payload)


def test_embedded_copy_is_real_mnist():
  m = data.mnist.load()
  assert m.x_train.shape == (60000, 784) and m.x_test.shape == (10000, 784)
  assert m.x_train.dtype == np.uint8
  np.testing.assert_allclose(m.x_train.mean(), 33.3184, atol=1e-4)
  np.testing.assert_array_equal(np.bincount(m.y_test),
                                [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])


def test_npz_roundtrip_and_checksum(tmp_path):
  arrays = _arrays()
  np.savez(tmp_path / 'a.npz', **arrays)
  np.savez_compressed(tmp_path / 'b.npz', **arrays)
  a, b = data.mnist.load(str(tmp_path / 'a.npz')), data.mnist.load(str(tmp_path / 'b.npz'))
  np.testing.assert_array_equal(a.x_train, arrays['x_train'].reshape(30, 784))
  assert a.sha256 == b.sha256  # the arrays, not the container


@pytest.mark.parametrize('gz', [False, True])
def test_idx_directory(tmp_path, gz):
  arrays = _arrays()
  for key, name in data.mnist.IDX_FILES.items():
    _write_idx(str(tmp_path / (name + ('.gz' if gz else ''))), arrays[key], gz)
  m = data.mnist.load(str(tmp_path))
  np.testing.assert_array_equal(m.x_test, arrays['x_test'].reshape(10, 784))
  np.testing.assert_array_equal(m.y_train, arrays['y_train'])


def _error(path):
  with pytest.raises(data.DataError) as e:
    data.mnist.load(str(path))
  message = str(e.value)
  assert '\n' not in message and str(path) in message
  return message


def test_missing_path(tmp_path):
  assert 'no such file' in _error(tmp_path / 'nope.npz')


def test_truncated_npz(tmp_path):
  np.savez(tmp_path / 'a.npz', **_arrays())
  raw = (tmp_path / 'a.npz').read_bytes()
  (tmp_path / 'cut.npz').write_bytes(raw[:len(raw) // 2])
  assert 'not a readable .npz' in _error(tmp_path / 'cut.npz')


def test_npz_missing_array(tmp_path):
  arrays = _arrays()
  del arrays['y_test']
  np.savez(tmp_path / 'a.npz', **arrays)
  assert 'missing arrays' in _error(tmp_path / 'a.npz')


@pytest.mark.parametrize('key,value,expect', [
    ('x_train', np.zeros((30, 28, 28, 1)), 'shape'),
    ('x_train', np.full((30, 784), 2.0), 'not in [0, 1]'),
    ('x_train', np.full((30, 784), 300, np.int32), 'outside 0..255'),
    ('x_train', np.full((30, 784), 'a'), 'dtype'),
    ('y_train', np.zeros(29, np.uint8), 'shape'),
    ('y_test', np.full(10, 12), 'labels 0..9'),
])
def test_bad_arrays(tmp_path, key, value, expect):
  arrays = _arrays()
  arrays[key] = value
  np.savez(tmp_path / 'a.npz', **arrays)
  assert expect in _error(tmp_path / 'a.npz')


def test_idx_errors(tmp_path):
  arrays = _arrays()
  for key, name in data.mnist.IDX_FILES.items():
    _write_idx(str(tmp_path / name), arrays[key])
  target = tmp_path / data.mnist.IDX_FILES['x_test']
  raw = target.read_bytes()
  target.write_bytes(raw[:-5])
  assert 'truncated' in _error(tmp_path)
  target.write_bytes(b'\x01\x02' + raw[2:])
  assert 'magic' in _error(tmp_path)
  target.unlink()
  assert 'missing IDX file' in _error(tmp_path)


def test_float_images_in_unit_range_are_accepted(tmp_path):
  arrays = _arrays()
  arrays['x_train'] = arrays['x_train'] / 255.0
  np.savez(tmp_path / 'a.npz', **arrays)
  m = data.mnist.load(str(tmp_path / 'a.npz'))
  assert m.x_train.dtype == np.uint8


def test_splits_and_validation(tmp_path):
  np.savez(tmp_path / 'a.npz', **_arrays())
  s = data.make_splits(config.DataConfig(path=str(tmp_path / 'a.npz'), validation_size=10))
  assert len(s.x_train) == 20 and len(s.x_valid) == 10 and len(s.x_test) == 10
  with pytest.raises(data.DataError, match='validation_size'):
    data.make_splits(config.DataConfig(path=str(tmp_path / 'a.npz'), validation_size=30))


def test_fixed_binarization_is_seeded():
  x = np.random.default_rng(0).integers(0, 256, (50, 784), dtype=np.uint8)
  a, b, c = data.binarize_fixed(x, 1), data.binarize_fixed(x, 1), data.binarize_fixed(x, 2)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  assert set(np.unique(a)) <= {0.0, 1.0}
  assert data.binarize_fixed(np.full((1, 4), 255, np.uint8), 0).tolist() == [[1, 1, 1, 1]]
  assert data.binarize_fixed(np.zeros((1, 4), np.uint8), 0).tolist() == [[0, 0, 0, 0]]
  # Bernoulli with probability grey/255.
  big = data.binarize_fixed(np.full((200, 784), 64, np.uint8), 3)
  assert abs(big.mean() - 64 / 255) < 0.005


def test_mean_pixel_logit():
  x = np.array([[0, 255, 51], [0, 255, 153]], np.uint8)
  logit = data.mean_pixel_logit(x)
  p = 1 / (1 + np.exp(-logit))
  np.testing.assert_allclose(p, [1e-3, 1 - 1e-3, 0.4], rtol=1e-5)

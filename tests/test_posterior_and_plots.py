"""Tests of the q_IW sampler, grid posteriors and the plot functions."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from iwae_tf import plotting
from iwae_tf import posterior
from helpers import binary, make_model

tfd = tfp.distributions


def toy_q_iw(k, n=40000, x=1.0, seed=0):
  """z ~ N(0,1), x|z ~ N(z,1): posterior N(x/2, 1/2); proposal q = N(x/2 + 1, 1)."""
  q = tfd.Normal(x / 2 + 1.0, 1.0)
  z = q.sample([k, n], seed=[seed, k])
  log_w = tfd.Normal(0., 1.).log_prob(z) + tfd.Normal(z, 1.).log_prob(x) - q.log_prob(z)
  return posterior.resample(z, log_w, tf.constant([seed, 100 + k])).numpy()


def test_q_iw_approaches_the_true_posterior_as_k_grows():
  errors = []
  for k in (1, 5, 50):
    z = toy_q_iw(k)
    errors.append(abs(z.mean() - 0.5) + abs(z.var() - 0.5))
  assert errors[0] > errors[1] > errors[2], errors
  assert errors[0] > 0.9 and errors[2] < 0.08, errors


def test_resample_picks_the_dominant_sample_and_keeps_trailing_axes():
  samples = tf.reshape(tf.range(3 * 2 * 4, dtype=tf.float32), [3, 2, 4])
  log_w = tf.constant([[-1e4, 0.0], [0.0, -1e4], [-1e4, -1e4]])
  got = posterior.resample(samples, log_w, tf.constant([1, 2])).numpy()
  np.testing.assert_array_equal(got, [samples[1, 0].numpy(), samples[0, 1].numpy()])


def test_importance_resample_shapes_and_k1_is_q():
  m = make_model((4, 3), hidden=((8,), (5,)), data_dim=10)
  x = binary(6, 10)
  hs = posterior.importance_resample(m, x, 7, tf.constant([1, 2]))
  assert [h.shape for h in hs] == [(6, 4), (6, 3)]
  seed = tf.constant([3, 4])
  one = posterior.importance_resample(m, x, 1, seed)
  plain, _ = m.encode(x, m.draw_noise(1, 6, tf.random.experimental.stateless_split(seed, 2)[0]))
  for a, b in zip(one, plain):
    np.testing.assert_allclose(a.numpy(), b.numpy()[0])


def test_grid_posteriors_are_normalised_and_tv():
  # Fixed weights: otherwise they depend on which tests ran before this one.
  keras.utils.set_random_seed(0)
  m = make_model((2,), hidden=((8,),), data_dim=10)
  x = binary(1, 10).numpy()[0]
  points, area = posterior.grid((-4, 4), 30)
  assert points.shape == (900, 2) and area == pytest.approx((8 / 30)**2)
  true = posterior.true_posterior(m, x, points, area)
  q = posterior.q_posterior(m, x, points, area)
  np.testing.assert_allclose([true.sum(), q.sum()], 1.0, rtol=1e-6)
  assert posterior.total_variation(true, true) == 0.0
  assert 0.0 < posterior.total_variation(true, q) <= 1.0
  h = posterior.q_iw_histogram(m, x, 5, (-4, 4), 30, num_draws=2000)
  assert h.shape == (900,) and 0.9 < h.sum() <= 1.0 + 1e-9
  # A focused grid holds both densities and resolves them better.
  extent = posterior.focus_extent(m, x)
  assert extent[1] - extent[0] == pytest.approx(extent[3] - extent[2])
  points, area = posterior.grid(extent, 30)
  assert posterior.true_posterior(m, x, points, area).max() > true.max()
  # Histogram and densities share the cell layout (x varies fastest): with
  # many draws at k = 1 the histogram approximates q's cell probabilities.
  enc = m.encoders[0]
  for v in (enc.loc.kernel, enc.log_scale.kernel):
    v.assign(tf.zeros_like(v))
  enc.loc.bias.assign([1.0, -0.5])
  enc.log_scale.bias.assign(np.log([0.3, 0.8]))
  points, area = posterior.grid((-3, 3), 30)
  q_f = posterior.q_posterior(m, x, points, area)
  h_f = posterior.q_iw_histogram(m, x, 1, (-3, 3), 30, num_draws=20000)
  assert posterior.total_variation(q_f, h_f) < 0.15
  assert posterior.total_variation(q_f, h_f.reshape(30, 30).T.ravel()) > 0.5


def _non_empty(fig):
  fig.canvas.draw()
  pixels = np.asarray(fig.canvas.buffer_rgba())
  assert pixels.shape[0] > 50 and pixels.shape[1] > 50
  assert (pixels[..., :3] < 250).any()  # something was drawn
  assert fig.axes


def test_plot_functions_draw():
  rng = np.random.default_rng(0)
  _non_empty(plotting.latent_scatter([('a', rng.normal(size=(50, 2))),
                                      ('b', rng.normal(size=(50, 2)))],
                                     rng.integers(0, 10, 50), [rng.normal(size=(20, 2)), None]))
  _non_empty(plotting.image_rows([rng.random((3, 784)), rng.random((2, 784))], ['x', 'y'], title='t'))
  d = rng.random(100)
  _non_empty(plotting.posterior_panels([[d, d], [d, d]], ['p', 'q'], [(-1, 1, -1, 1), (0, 2, 1, 3)],
                                       [['', 'TV 0.1'], ['', 'TV 0.2']]))
  _non_empty(plotting.line_panels([dict(series={'A': ([1, 5, 50], [90, 89, 88])}, xlabel='k',
                                        ylabel='nll', logx=True, xticks=[1, 5, 50])]))


def test_variance_histograms_count_active_units_per_layer():
  rng = np.random.default_rng(0)
  h1 = {'VAE k=5': 10.0 ** rng.uniform(-4, 0, 100), 'IWAE k=5': 10.0 ** rng.uniform(-1, 0, 100)}
  h2 = {'VAE k=5': np.r_[np.full(40, 1e-5), np.full(10, 0.5)], 'IWAE k=5': np.full(50, 0.5)}
  fig = plotting.variance_histograms([h1, h2], title='MNIST')
  _non_empty(fig)
  assert [ax.get_title() for ax in fig.axes] == ['h1 (MNIST)', 'h2 (MNIST)']
  labels = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
  assert labels == ['VAE k=5: 10 of 50 active', 'IWAE k=5: 50 of 50 active']
  # The threshold line sits at log10(1e-2).
  assert any(np.allclose(line.get_xdata(), -2.0) for line in fig.axes[0].get_lines())


def test_learning_curve_marks_reference_values():
  fig = plotting.line_panels([dict(series={'VAE k=1': ([1, 4, 13], [120.0, 100.0, 95.0])},
                                   xlabel='epoch', ylabel='nll', logx=True,
                                   hlines={'VAE k=1': 86.76})])
  _non_empty(fig)
  ys = [line.get_ydata() for line in fig.axes[0].get_lines()]
  assert any(np.allclose(y, 86.76) for y in ys)

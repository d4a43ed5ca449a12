"""Figures: pure functions, arrays in, ``matplotlib.figure.Figure`` out.

Nothing is computed or drawn at import time; the Agg backend is used so that
figures render without a display.
"""

import matplotlib

matplotlib.use('Agg')

from matplotlib import figure as mpl_figure  # noqa: E402
from matplotlib import ticker  # noqa: E402
from matplotlib.backends import backend_agg  # noqa: E402
import numpy as np  # noqa: E402


def _figure(width, height):
  fig = mpl_figure.Figure(figsize=(width, height), layout='constrained')
  backend_agg.FigureCanvasAgg(fig)  # renders without pyplot or a display
  return fig


def latent_scatter(panels, labels, samples=None, extent=None):
  """2-D latent scatter plots, one panel per model, shared axes.

  Args:
    panels: list of ``(title, [N, 2] posterior means)``.
    labels: ``[N]`` digit labels (colours).
    samples: optional list (one per panel) of ``[M, 2]`` posterior samples
      drawn as small grey points behind the means.
    extent: ``(lo, hi)`` for both axes; default from the data.

  Returns:
    The figure.
  """
  n = len(panels)
  cols = min(n, 3)
  rows = int(np.ceil(n / cols))
  fig = _figure(4 * cols, 4 * rows)
  axes = np.atleast_1d(fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False)).ravel()
  if extent is None:
    everything = np.concatenate([m for _, m in panels])
    extent = (float(np.percentile(everything, 0.5)) - 0.5,
              float(np.percentile(everything, 99.5)) + 0.5)
  for i, (title, means) in enumerate(panels):
    ax = axes[i]
    if samples is not None and samples[i] is not None:
      ax.scatter(samples[i][:, 0], samples[i][:, 1], s=1, c='0.8', rasterized=True)
    sc = ax.scatter(means[:, 0], means[:, 1], c=labels, cmap='tab10', s=2, vmin=-0.5,
                    vmax=9.5, rasterized=True)
    ax.set_title(title)
    ax.set_xlim(extent)
    ax.set_ylim(extent)
    ax.set_aspect('equal')
  for ax in axes[n:]:
    ax.set_visible(False)
  fig.colorbar(sc, ax=axes[:n].tolist(), ticks=range(10), label='digit', shrink=0.8)
  return fig


def image_rows(rows, row_titles, image_shape=(28, 28), title=None):
  """A grid of images: one row per entry of ``rows`` (each ``[n, D]``)."""
  n = max(len(r) for r in rows)
  fig = _figure(0.8 * n + 1.5, 0.85 * len(rows) + (0.4 if title else 0))
  axes = fig.subplots(len(rows), n, squeeze=False)
  for r, (images, name) in enumerate(zip(rows, row_titles)):
    for c in range(n):
      ax = axes[r, c]
      ax.set_xticks([])
      ax.set_yticks([])
      if c < len(images):
        ax.imshow(np.reshape(images[c], image_shape), cmap='gray_r', vmin=0, vmax=1)
      if c == 0:
        ax.set_ylabel(name, rotation=0, ha='right', va='center', fontsize=8)
  if title:
    fig.suptitle(title, fontsize=10)
  return fig


def tiled(images, columns=8, image_shape=(28, 28)):
  """``[n, D]`` images as one ``[rows * h, columns * w]`` array, row by row."""
  h, w = image_shape
  rows = -(-len(images) // columns)
  out = np.zeros((rows * h, columns * w))
  for i, image in enumerate(images):
    r, c = divmod(i, columns)
    out[r * h:(r + 1) * h, c * w:(c + 1) * w] = np.reshape(image, image_shape)
  return out


def image_grids(grids, titles, columns=8, image_shape=(28, 28)):
  """Panels side by side, each a grid of images (``[n, D]``, values in [0, 1])."""
  fig = _figure(2.6 * len(grids), 2.9)
  axes = fig.subplots(1, len(grids), squeeze=False)[0]
  for ax, images, title in zip(axes, grids, titles):
    ax.imshow(tiled(images, columns, image_shape), cmap='gray_r', vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=8)
  return fig


def posterior_panels(densities, titles, extents, row_titles=None):
  """Grid densities side by side: rows are images, columns are distributions.

  Args:
    densities: ``[rows][cols]`` of ``[size*size]`` cell probabilities.
    titles: column titles (e.g. 'true p(z|x)', 'q', 'q_IW k=5').
    extents: per row, ``(x_lo, x_hi, y_lo, y_hi)`` of its grid.
    row_titles: optional ``[rows][cols]`` labels under the panels (e.g. distances).
  """
  rows, cols = len(densities), len(densities[0])
  fig = _figure(2.1 * cols, 2.1 * rows)
  axes = fig.subplots(rows, cols, squeeze=False)
  for r in range(rows):
    for c in range(cols):
      d = np.asarray(densities[r][c])
      size = int(round(np.sqrt(d.size)))
      ax = axes[r, c]
      ax.imshow(d.reshape(size, size), origin='lower', extent=list(extents[r]),
                cmap='viridis', interpolation='nearest')
      ax.set_xticks([])
      ax.set_yticks([])
      if r == 0:
        ax.set_title(titles[c], fontsize=9)
      if row_titles is not None:
        ax.set_xlabel(row_titles[r][c], fontsize=7)
  return fig


def line_panels(panels):
  """Line plots in one row.

  Args:
    panels: list of dicts with ``series`` (``{name: (x, y)}``), ``xlabel``,
      ``ylabel`` and optionally ``title``, ``logx``, ``xticks``, ``hlines``
      (``{name: y}``: a dashed line in that series' colour) and ``legend``
      (default True).
  """
  fig = _figure(5 * len(panels), 3.5)
  axes = np.atleast_1d(fig.subplots(1, len(panels)))
  for ax, panel in zip(axes, panels):
    for name, (x, y) in panel['series'].items():
      line, = ax.plot(x, y, marker='o' if len(x) < 20 else None, label=name)
      if name in panel.get('hlines', {}):
        ax.axhline(panel['hlines'][name], color=line.get_color(), linestyle='--', linewidth=1)
    if panel.get('logx'):
      ax.set_xscale('log')
    if panel.get('xticks') is not None:
      ax.set_xticks(panel['xticks'])
      ax.set_xticklabels([str(t) for t in panel['xticks']])
      # A log axis spanning less than a decade labels its minor ticks too.
      ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set_xlabel(panel['xlabel'])
    ax.set_ylabel(panel['ylabel'])
    ax.set_title(panel.get('title', ''))
    ax.grid(alpha=0.3)
    if panel.get('legend', True):
      ax.legend(fontsize=8)
  return fig


def variance_histograms(layers, threshold=1e-2, title=''):
  """Per stochastic layer, histograms of log10 Var_x(E_q[u]) over the units.

  Args:
    layers: list (h1 first) of ``{name: variances [units]}``.
    threshold: the active-unit threshold, marked by a vertical line.
    title: figure title.
  """
  fig = _figure(5 * len(layers), 3.5)
  axes = np.atleast_1d(fig.subplots(1, len(layers)))
  logs = [np.log10(np.maximum(np.asarray(v, float), 1e-12))
          for series in layers for v in series.values()]
  bins = np.linspace(min(l.min() for l in logs) - 0.1, max(l.max() for l in logs) + 0.1, 40)
  for l, (ax, series) in enumerate(zip(axes, layers)):
    for name, v in series.items():
      v = np.asarray(v, float)
      active = int(np.sum(v > threshold))
      ax.hist(np.log10(np.maximum(v, 1e-12)), bins=bins, alpha=0.55,
              label=f'{name}: {active} of {len(v)} active')
    ax.axvline(np.log10(threshold), color='k', linestyle='--', linewidth=1)
    ax.set_xlabel('log10 Var_x(E_q[u])')
    ax.set_ylabel('units')
    ax.set_title(f'h{l + 1}' + (f' ({title})' if title else ''))
    ax.legend(fontsize=8)
  return fig

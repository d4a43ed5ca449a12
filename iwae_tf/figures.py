"""The README's figures, one function each: explicit inputs (models, images,
results) in, ``(matplotlib figure, measurements)`` out.

The measurements are the numbers a figure shows, which ``figures/
measurements.json`` keeps and the documents quote. A figure whose inputs are
missing raises ``Missing``, whose message says how to make them. Nothing here
reads flags, finds runs or writes files: ``plots/regenerate.py`` does.
"""

import numpy as np
import tensorflow as tf

from iwae_tf import config as config_lib
from iwae_tf import errors
from iwae_tf import layers
from iwae_tf import logs
from iwae_tf import metrics
from iwae_tf import objectives
from iwae_tf import paper
from iwae_tf import plotting
from iwae_tf import posterior
from iwae_tf import results as results_lib
from iwae_tf import tables

KS = (1, 5, 50)
# The learning curve's second panel starts at the end of this stage (the sixth).
ZOOM_FROM = paper.STAGE_ENDS[5]


class Missing(errors.IWAEError):
  """A figure's inputs are missing; the message says how to make them."""


def latent_scatter(models, x, y):
  """2-D latent posterior means of test digits, one panel per model.

  Args:
    models: ``(objective, k, model, epoch)`` of each 2-D run, in panel order.
    x, y: binarised test images and their labels.
  """
  panels, draws = [], []
  for objective, k, model, epoch in models:
    q = model.encoders[0](tf.constant(x))
    panels.append((f'{objective.upper()} k={k} ({epoch} epochs)', q.mean().numpy()))
    eps = layers.standard_normal_noise(tf.concat([[1], tf.shape(q.mean())], 0), tf.constant([0, 1]))
    draws.append(layers.reparameterize(q, eps)[0].numpy()[:1000])
    if objective == 'vae' and k == 1:
      panels.append(('IWAE k=1 (= VAE k=1)', panels[-1][1]))
      draws.append(draws[-1])
  if not panels:
    raise Missing('no 2-D runs; make them with: python plots/regenerate.py --train_missing')
  fig = plotting.latent_scatter(panels, y, draws)
  return fig, {'panels': [t for t, _ in panels], 'images': int(len(x))}


def reweighting(model, run, epoch, x, images=1000, shown=12):
  """Reconstructions from plain q samples against importance-resampled (q_IW)
  ones: ``log p(x|z)`` on the first ``images`` of ``x``, the first ``shown``
  drawn."""
  gains = posterior.reweighting_gain(model, x[:images], KS, seed=0)
  rows, names = [x[:shown]], ['data']
  for k in KS:
    z = posterior.importance_resample(model, tf.constant(x[:shown]), k, tf.constant([3, k]))[0]
    rows.append(model.decoders[0](z).mean().numpy())
    names.append(f'q, log p(x|z)={gains[k][0]:.1f}' if k == 1 else
                 f'q_IW k={k}, log p(x|z)={gains[k][0]:.1f}\nbetter than q: {gains[k][1]:.0%}')
  fig = plotting.image_rows(rows, names, title=f'IWAE k=5, 50 latents, {epoch} epochs: '
                            'reconstruction means of one z per image')
  return fig, {'run': run, 'epoch': epoch, 'images': images,
               'mean_log_p_x_given_z': {k: g[0] for k, g in gains.items()},
               'fraction_better_than_plain_q': {k: g[1] for k, g in gains.items()}}


def posterior_shapes(model, run, epoch, x, grid, draws, images=4):
  """The true posterior, q and q_IW (k = 1, 5, 50) of a 2-D latent model on a
  grid, for the first ``images`` of ``x``, with their total variations."""
  rows, labels, extents, tvs, tv_q = [], [], [], {k: [] for k in KS}, []
  for i in range(images):
    extent = posterior.focus_extent(model, x[i])
    extents.append(extent)
    points, area = posterior.grid(extent, grid)
    true = posterior.true_posterior(model, x[i], points, area)
    q = posterior.q_posterior(model, x[i], points, area)
    row, lab = [true, q], ['', f'TV {posterior.total_variation(true, q):.2f}']
    tv_q.append(posterior.total_variation(true, q))
    for k in KS:
      h = posterior.q_iw_histogram(model, x[i], k, extent, grid, draws, seed=i)
      tv = posterior.total_variation(true, h)
      tvs[k].append(tv)
      row.append(h)
      lab.append(f'TV {tv:.2f}')
    rows.append(row)
    labels.append(lab)
  titles = ['true p(z|x)', 'q(z|x)'] + [f'q_IW k={k} (hist.)' for k in KS]
  fig = plotting.posterior_panels(rows, titles, extents, labels)
  return fig, {'run': run, 'epoch': epoch, 'images': images, 'draws': draws, 'grid': grid,
               'tv_true_vs_q_density': float(np.mean(tv_q)),
               'tv_true_vs_q_iw_histogram': {k: float(np.mean(v)) for k, v in tvs.items()}}


def nll_vs_k(newest):
  """Test NLL and active units against k, from the 50-latent poster runs'
  results (``results.collect``: the newest of each run)."""
  runs = {}
  for r in newest:
    if r.key.latents == '50' and r.schedule == 'poster':
      runs[(r.config['objective']['name'], r.key.k)] = r
  if (('iwae', 5) not in runs) or (('vae', 1) not in runs):
    raise Missing('needs results of the poster runs VAE k=1 and IWAE k=5; make them with: '
                  'python plots/regenerate.py --train_poster')
  runs.setdefault(('iwae', 1), runs[('vae', 1)])  # the same objective at k = 1
  series_nll, series_au = {}, {}
  for obj in ('vae', 'iwae'):
    ks = [k for k in KS if (obj, k) in runs]
    series_nll[obj.upper()] = (ks, [runs[(obj, k)].nll for k in ks])
    series_au[obj.upper()] = (ks, [sum(runs[(obj, k)].active_units) for k in ks])
  epochs = '/'.join(str(e) for e in sorted({r.epoch for r in runs.values()}))
  fig = plotting.line_panels([
      dict(series=series_nll, xlabel='k (training)', ylabel='test NLL (K = 5000)',
           logx=True, xticks=list(KS), title=f'1 layer, 50 latents, {epochs} epochs'),
      dict(series=series_au, xlabel='k (training)', ylabel='active units', logx=True,
           xticks=list(KS), title='active units (of 50)')])
  return fig, {f'{o}_k{k}': {'nll': r.nll, 'active_units': sum(r.active_units), 'epoch': r.epoch}
               for (o, k), r in sorted(runs.items())}


def learning_curve(all_results):
  """Test NLL at the paper schedule's milestones (``results.learning_curves``),
  the paper's final numbers dashed; the measurements add IWAE against both
  baselines, image by image (``results.learning_curve_pairs``)."""
  curves, final = {}, {}
  runs = results_lib.learning_curves(all_results)
  for key in sorted(runs, key=results_lib.curve_order):
    points = {e: r.nll for e, r in runs[key].items() if r.k_nll == 5000}
    if not points:
      continue
    name = tables.curve_label(key.dataset, key.layers, key.latents,
                              f'{key.objective.upper()} k={key.k}')
    epochs = sorted(points)
    curves[name] = (epochs, [points[e] for e in epochs])
    ref = paper.nll(key.dataset, key.objective, key.latents, key.k)
    if ref is not None:
      final[name] = ref
  if not curves:
    raise Missing('no results of --schedule=paper runs; make them with: python train.py '
                  '--objective=vae --k=1 --schedule=paper, then python evaluate.py '
                  '--run_dir=runs/vae_k1_50_paper --milestones')
  # Ticks at the stages' ends; a run's newest checkpoint between them is drawn unlabelled.
  epochs = sorted({e for x, _ in curves.values() for e in x} & set(paper.STAGE_ENDS))
  xlabel = 'epoch (ticks: ends of the schedule\'s stages)'
  panels = [dict(series=curves, xlabel=xlabel, ylabel='test NLL (K = 5000, 10,000 images)',
                 logx=True, hlines=final, xticks=epochs,
                 title='paper schedule; dashed: paper, 3280 epochs')]
  if any(e >= ZOOM_FROM for x, _ in curves.values() for e in x):
    # The runs part by a nat or two late on, against a first panel spanning 30 nats. Every
    # series stays, empty or not, so that each run keeps its colour in both panels.
    late = {n: ([e for e in x if e >= ZOOM_FROM], [v for e, v in zip(x, y) if e >= ZOOM_FROM])
            for n, (x, y) in curves.items()}
    panels.append(dict(series=late, xlabel=xlabel, ylabel='test NLL', logx=True,
                       hlines=final, xticks=[e for e in epochs if e >= ZOOM_FROM],
                       legend=False, title=f'from epoch {ZOOM_FROM} on'))
  fig = plotting.line_panels(panels)
  measured = {n: {str(e): v for e, v in zip(*xy)} for n, xy in curves.items()}
  for (key, vae_k), paired in results_lib.learning_curve_pairs(runs).items():
    name = tables.curve_label(key.dataset, key.layers, key.latents,
                              f'IWAE k={key.k} - VAE k={vae_k}')
    measured[f'{name} (mean, paired stderr)'] = {str(e): d for e, d in paired.items()}
  return fig, measured


def active_units(all_results):
  """Histograms of log10 Var_x(E_q[u]) per layer, VAE against IWAE at the same
  k, from the results' variances: the pair measured at the same epoch, the
  latest such epoch (then the largest k), with the paper's setup."""
  pairs = {}
  for r in all_results:  # every epoch measured, not the newest
    key = r.key
    if key.objective in ('vae', 'iwae') and key.k > 1 and not r.departures:
      pairs.setdefault((key.epochs, key.k, key.dataset, key.latents), {})[key.objective] = r
  complete = sorted(key for key, pair in pairs.items() if len(pair) == 2)
  if not complete:
    raise Missing('needs results of a VAE and an IWAE run at the same k > 1 and epoch; make '
                  'them with: python plots/regenerate.py --train_poster, or evaluate.py '
                  '--milestones on the --schedule=paper runs')
  epoch, k, dataset, lat = complete[-1]
  pair = pairs[complete[-1]]
  per_layer = [{f'{obj.upper()} k={k}': pair[obj].variances[l] for obj in ('vae', 'iwae')}
               for l in range(len(pair['vae'].active_units))]
  fig = plotting.variance_histograms(per_layer, title=f'{dataset.upper()}, {lat} latents, '
                                     f'{epoch} epochs')
  return fig, {
      'epoch': epoch, 'k': k, 'latents': lat, 'dataset': dataset,
      **{obj: {'run': pair[obj].run, 'active_units': pair[obj].active_units,
               'inactive_median_log10_variance': [
                   inactive_median_log10(v) for v in pair[obj].variances]}
         for obj in pair}}


def inactive_median_log10(variances):
  """Median log10 Var_x(E_q[u]) of a layer's inactive units (None if all are active)."""
  v = np.asarray(variances, float)
  inactive = v[v <= metrics.ACTIVE_THRESHOLD]
  return float(np.median(np.log10(inactive))) if inactive.size else None


def training_curves(runs):
  """-L_k and active units per epoch, read back from TensorBoard logs.

  Args:
    runs: ``(objective, k, TensorBoard directory)`` of each run.
  """
  lk, au = {}, {}
  for objective, k, tensorboard in runs:
    scalars = logs.read_scalars(tensorboard)
    if f'train/L_{k}' not in scalars:
      continue
    steps, values = zip(*scalars[f'train/L_{k}'])
    lk[f'{objective.upper()} k={k}'] = (steps, [-v for v in values])
    steps, values = zip(*scalars['train/active_units/h1'])
    au[f'{objective.upper()} k={k}'] = (steps, values)
  if not lk:
    raise Missing('no poster runs with TensorBoard logs in runs/; make them with: '
                  'python plots/regenerate.py --train_poster')
  fig = plotting.line_panels([
      dict(series=lk, xlabel='epoch', ylabel='-L_k (1,000 training images)',
           title='training bound per epoch'),
      dict(series=au, xlabel='epoch', ylabel='active units', title='active units per epoch')])
  return fig, {n: {'final_minus_L_k': v[1][-1], 'epochs': len(v[0])} for n, v in lk.items()}


def gradient_snr(model, run, epoch, x, draws, ks=(1, 3, 10, 30, 100)):
  """Encoder and decoder gradient signal-to-noise ratio against k, the
  standard IWAE gradient against DReG, on the minibatch ``x``."""
  series = {'encoder': {}, 'decoder': {}}
  for estimator in ('iwae', 'dreg'):
    values = []
    for k in ks:
      objective = objectives.make(config_lib.ObjectiveConfig('iwae', k, estimator))
      values.append(metrics.gradient_snr(model, objective, x, draws))
    for part in series:
      series[part][estimator.upper()] = (ks, [v[part] for v in values])
  fig = plotting.line_panels([
      dict(series=series[part], xlabel='k', ylabel='mean gradient SNR', logx=True,
           xticks=list(ks), title=f'{part} (IWAE k=5 model, {epoch} epochs)')
      for part in ('encoder', 'decoder')])
  return fig, {'run': run, 'epoch': epoch, 'images': len(x), 'draws': draws, 'k': list(ks),
               **{f'{part}_{est}': v[1] for part in series for est, v in series[part].items()}}


def samples(models, x, n=64, seed=0):
  """Bernoulli means of ``n`` ancestral samples from each model
  (``{name: iwae_tf.pretrained.Pretrained}``), beside ``n`` binarised test
  digits ``x`` (the original code's ``samples.jpg``)."""
  if not models:
    raise Missing('no model in iwae_tf/pretrained/ (evaluate.py --export)')
  grids = [x[:n]] + [m.sample(n, seed) for m in models.values()]
  titles = ['test digits'] + [f'{m.config.objective.name.upper()} k={m.config.objective.k}, '
                              f'{m.epoch} epochs' for m in models.values()]
  return plotting.image_grids(grids, titles), {
      'models': {name: m.epoch for name, m in models.items()}, 'samples': n, 'seed': seed}

"""Regenerates every figure of the README from the project's own runs.

  python plots/regenerate.py                      # figures from existing runs
  python plots/regenerate.py --train_missing      # first train the 2-D runs it needs
  python plots/regenerate.py --train_missing --train_poster   # and the 50-latent runs (long)
  python plots/regenerate.py --figures=nll_vs_k,training_curves   # only these (the others'
                                                  # entries in measurements.json are kept)

Figures (written to --out_dir, with the numbers they show in measurements.json):
  latent_scatter.png   2-D latent posterior means of test digits: VAE/IWAE at k = 1, 5, 50
  reweighting.png      reconstructions from plain q samples vs importance-resampled (q_IW) ones
  posterior_shapes.png true posterior, q and q_IW (k = 1, 5, 50) on a grid, 2-D latent model
  nll_vs_k.png         test NLL (K = 5000) and active units vs k, from evaluate.py's results
  training_curves.png  -L_k and active units per epoch, read back from TensorBoard logs
  gradient_snr.png     encoder/decoder gradient signal-to-noise ratio vs k, IWAE vs DReG

The 2-D runs live in RUNS/latent2_<objective>_k<k>; the 50-latent runs used for the NLL,
reweighting and training-curve figures are RUNS/poster_<objective>_k<k> (train.py with
--schedule=poster, then evaluate.py). A figure whose runs are missing is skipped with a note.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from iwae_tf import cli  # noqa: E402

cli.quiet_tensorflow()

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

flags.DEFINE_string('runs_root', 'runs', 'Where the runs are.')
flags.DEFINE_string('out_dir', 'figures', 'Where the figures go.')
flags.DEFINE_bool('train_missing', False, 'Train the missing 2-D latent runs first (about '
                  '15 minutes on 2 cores at the default 10 epochs).')
flags.DEFINE_bool('train_poster', False, 'Also train and evaluate the missing 50-latent poster '
                  'runs (70 epochs each; about 1.5 hours on 2 cores, mostly k = 50).')
flags.DEFINE_list('figures', [], 'Only these figures (names without .png); default: all.')
flags.DEFINE_integer('latent2_epochs', 10, 'Epochs of the poster schedule for the 2-D runs.')
flags.DEFINE_integer('test_images', 5000, 'Test images in the scatter plots.')
flags.DEFINE_integer('draws', 20000, 'q_IW draws per image for the posterior histograms.')
flags.DEFINE_integer('grid', 60, 'Grid cells per axis for the posterior shapes.')
flags.DEFINE_integer('snr_images', 20, 'Minibatch (test images) of the gradient SNR figure.')
flags.DEFINE_integer('snr_draws', 100, 'Gradient estimates per point of the SNR figure.')
FLAGS = flags.FLAGS

LATENT2 = [('vae', 1), ('vae', 5), ('iwae', 5), ('vae', 50), ('iwae', 50)]
POSTER = [('vae', 1), ('vae', 5), ('vae', 50), ('iwae', 5), ('iwae', 50)]
KS = (1, 5, 50)


def _run(kind, objective, k):
  return os.path.join(FLAGS.runs_root, f'{kind}_{objective}_k{k}')


def _has_checkpoint(run_dir):
  return os.path.exists(os.path.join(run_dir, 'checkpoints', 'checkpoint'))


def _restore(run_dir, figure, hint=''):
  """``(model, epoch)`` of a run's latest checkpoint, or None (and a note) if missing."""
  from iwae_tf import evaluation
  if not _has_checkpoint(run_dir):
    print(f'{figure}: {run_dir} missing{hint}')
    return None
  _, model, _, epoch = evaluation.restore(run_dir)
  return model, epoch


def train_latent2(objective, k):
  from iwae_tf import config as c
  from iwae_tf import training
  cfg = c.TrainConfig(
      model=c.ModelConfig(latents=(2,), hidden=c.default_hidden((2,))),
      objective=c.ObjectiveConfig(objective, k), optim=c.OptimConfig(schedule='poster'),
      epochs=FLAGS.latent2_epochs, run_dir=_run('latent2', objective, k), verbose=2)
  print(f'training {cfg.run_dir} for {cfg.total_epochs} epochs')
  training.train(cfg)


def train_poster(objective, k):
  from iwae_tf import config as c
  from iwae_tf import evaluation, training
  run_dir = _run('poster', objective, k)
  cfg = c.TrainConfig(objective=c.ObjectiveConfig(objective, k),
                      optim=c.OptimConfig(schedule='poster'), run_dir=run_dir, verbose=2)
  print(f'training {run_dir} for {cfg.total_epochs} epochs')
  training.train(cfg)
  if not os.path.exists(os.path.join(run_dir, 'results', 'eval-ckpt70-K5000.json')):
    evaluation.evaluate_run(run_dir)


def save(fig, name):
  path = os.path.join(FLAGS.out_dir, name)
  fig.savefig(path, dpi=110)
  print(f'wrote {path}')


def scatter(test, measurements):
  import tensorflow as tf
  from iwae_tf import evaluation, layers, plotting
  panels, samples = [], []
  x = test['x'][:FLAGS.test_images]
  for objective, k in LATENT2:
    run = _run('latent2', objective, k)
    if not _has_checkpoint(run):
      continue
    _, model, _, epoch = evaluation.restore(run)
    q = model.encoders[0](tf.constant(x))
    panels.append((f'{objective.upper()} k={k} ({epoch} epochs)', q.mean().numpy()))
    samples.append(layers.sample(q, tf.constant([0, 1]), [1])[0].numpy()[:1000])
    if objective == 'vae' and k == 1:
      panels.append(('IWAE k=1 (= VAE k=1)', panels[-1][1]))
      samples.append(samples[-1])
  if not panels:
    print('latent_scatter.png: no 2-D runs (use --train_missing)')
    return
  save(plotting.latent_scatter(panels, test['y'][:FLAGS.test_images], samples), 'latent_scatter.png')
  measurements['latent_scatter'] = {'panels': [t for t, _ in panels], 'images': int(len(x))}


def reweighting(test, measurements):
  import tensorflow as tf
  from iwae_tf import plotting, posterior
  run = _run('poster', 'iwae', 5)
  restored = _restore(run, 'reweighting.png')
  if restored is None:
    return
  model, epoch = restored
  gains = posterior.reweighting_gain(model, test['x'][:1000], KS, seed=0)
  x = tf.constant(test['x'][:12])
  rows, names = [test['x'][:12]], ['data']
  for k in KS:
    z = posterior.importance_resample(model, x, k, tf.constant([3, k]))[0]
    rows.append(tf.sigmoid(model.decoders[0].logits(model.decoders[0].mlp(z))).numpy())
    names.append(f'q, log p(x|z)={gains[k][0]:.1f}' if k == 1 else
                 f'q_IW k={k}, log p(x|z)={gains[k][0]:.1f}\nbetter than q: {gains[k][1]:.0%}')
  save(plotting.image_rows(rows, names, title=f'IWAE k=5, 50 latents, {epoch} epochs: '
                           'reconstruction means of one z per image'), 'reweighting.png')
  measurements['reweighting'] = {
      'run': run, 'epoch': epoch, 'images': 1000,
      'mean_log_p_x_given_z': {k: g[0] for k, g in gains.items()},
      'fraction_better_than_plain_q': {k: g[1] for k, g in gains.items()}}


def posterior_shapes(test, measurements):
  import numpy as np
  import tensorflow as tf
  from iwae_tf import plotting, posterior
  run = _run('latent2', 'vae', 1)
  restored = _restore(run, 'posterior_shapes.png', ' (use --train_missing)')
  if restored is None:
    return
  model, epoch = restored
  rows, labels, extents, tvs, tv_q = [], [], [], {k: [] for k in KS}, []
  for i in range(4):
    x = test['x'][i]
    extent = posterior.focus_extent(model, x)
    extents.append(extent)
    points, area = posterior.grid(extent, FLAGS.grid)
    true = posterior.true_posterior(model, x, points, area)
    q = posterior.q_posterior(model, x, points, area)
    row, lab = [true, q], ['', f'TV {posterior.total_variation(true, q):.2f}']
    tv_q.append(posterior.total_variation(true, q))
    for k in KS:
      h = posterior.q_iw_histogram(model, x, k, extent, FLAGS.grid, FLAGS.draws, seed=i)
      tv = posterior.total_variation(true, h)
      tvs[k].append(tv)
      row.append(h)
      lab.append(f'TV {tv:.2f}')
    rows.append(row)
    labels.append(lab)
  titles = ['true p(z|x)', 'q(z|x)'] + [f'q_IW k={k} (hist.)' for k in KS]
  fig = plotting.posterior_panels(rows, titles, extents, labels)
  save(fig, 'posterior_shapes.png')
  measurements['posterior_shapes'] = {
      'run': run, 'epoch': epoch, 'images': 4, 'draws': FLAGS.draws, 'grid': FLAGS.grid,
      'tv_true_vs_q_density': float(np.mean(tv_q)),
      'tv_true_vs_q_iw_histogram': {k: float(np.mean(v)) for k, v in tvs.items()}}


def nll_vs_k(measurements):
  from iwae_tf import evaluation, plotting
  results = {}
  for r in evaluation.collect(FLAGS.runs_root):
    cfg = r['config']
    if cfg['model']['latents'] == [50]:
      results[(cfg['objective']['name'], cfg['objective']['k'])] = r
  if (('iwae', 5) not in results) or (('vae', 1) not in results):
    print('nll_vs_k.png: evaluate the poster runs first')
    return
  results.setdefault(('iwae', 1), results[('vae', 1)])  # the same objective at k = 1
  series_nll, series_au = {}, {}
  for obj in ('vae', 'iwae'):
    ks = [k for k in KS if (obj, k) in results]
    series_nll[obj.upper()] = (ks, [results[(obj, k)]['test']['nll']['mean'] for k in ks])
    series_au[obj.upper()] = (ks, [sum(results[(obj, k)]['active_units']) for k in ks])
  epochs = '/'.join(str(e) for e in sorted({r['epoch'] for r in results.values()}))
  fig = plotting.line_panels([
      dict(series=series_nll, xlabel='k (training)', ylabel='test NLL (K = 5000)',
           logx=True, xticks=list(KS), title=f'1 layer, 50 latents, {epochs} epochs'),
      dict(series=series_au, xlabel='k (training)', ylabel='active units', logx=True,
           xticks=list(KS), title='active units (of 50)')])
  save(fig, 'nll_vs_k.png')
  measurements['nll_vs_k'] = {f'{o}_k{k}': {'nll': r['test']['nll']['mean'],
                                             'active_units': sum(r['active_units']),
                                             'epoch': r['epoch']}
                              for (o, k), r in sorted(results.items())}


def training_curves(measurements):
  from iwae_tf import logs, plotting
  lk, au = {}, {}
  for objective, k in POSTER:
    run = _run('poster', objective, k)
    scalars = logs.read_scalars(os.path.join(run, 'tensorboard'))
    if f'train/L_{k}' not in scalars:
      continue
    steps, values = zip(*scalars[f'train/L_{k}'])
    lk[f'{objective.upper()} k={k}'] = (steps, [-v for v in values])
    steps, values = zip(*scalars['train/active_units/h1'])
    au[f'{objective.upper()} k={k}'] = (steps, values)
  if not lk:
    print('training_curves.png: no poster runs with logs')
    return
  fig = plotting.line_panels([
      dict(series=lk, xlabel='epoch', ylabel='-L_k (1,000 training images)',
           title='training bound per epoch'),
      dict(series=au, xlabel='epoch', ylabel='active units', title='active units per epoch')])
  save(fig, 'training_curves.png')
  measurements['training_curves'] = {n: {'final_minus_L_k': v[1][-1], 'epochs': len(v[0])}
                                     for n, v in lk.items()}


def gradient_snr(test, measurements):
  from iwae_tf import config as c
  from iwae_tf import metrics, objectives, plotting
  run = _run('poster', 'iwae', 5)
  restored = _restore(run, 'gradient_snr.png')
  if restored is None:
    return
  model, epoch = restored
  ks = (1, 3, 10, 30, 100)
  series = {'encoder': {}, 'decoder': {}}
  for estimator in ('iwae', 'dreg'):
    values = []
    for k in ks:
      model.objective = objectives.make(c.ObjectiveConfig('iwae', k, estimator))
      values.append(metrics.gradient_snr(model, test['x'][:FLAGS.snr_images], FLAGS.snr_draws))
    for part in series:
      series[part][estimator.upper()] = (ks, [v[part] for v in values])
  fig = plotting.line_panels([
      dict(series=series[part], xlabel='k', ylabel='mean gradient SNR', logx=True,
           xticks=list(ks), title=f'{part} (IWAE k=5 model, {epoch} epochs)')
      for part in ('encoder', 'decoder')])
  save(fig, 'gradient_snr.png')
  measurements['gradient_snr'] = {
      'run': run, 'epoch': epoch, 'images': FLAGS.snr_images, 'draws': FLAGS.snr_draws,
      'k': list(ks), **{f'{part}_{est}': v[1] for part in series
                        for est, v in series[part].items()}}


def main(argv):
  del argv
  from absl import logging
  logging.set_verbosity(logging.WARNING)
  from iwae_tf import data
  if FLAGS.train_missing:
    for objective, k in LATENT2:
      train_latent2(objective, k)  # resumes, or returns at once when complete
  if FLAGS.train_poster:
    for objective, k in POSTER:
      train_poster(objective, k)
  os.makedirs(FLAGS.out_dir, exist_ok=True)
  mnist = data.load_mnist()
  test = {'x': data.binarize_fixed(mnist.x_test, 0), 'y': mnist.y_test}
  figures = {'latent_scatter': lambda m: scatter(test, m),
             'reweighting': lambda m: reweighting(test, m),
             'posterior_shapes': lambda m: posterior_shapes(test, m),
             'nll_vs_k': nll_vs_k, 'training_curves': training_curves,
             'gradient_snr': lambda m: gradient_snr(test, m)}
  unknown = sorted(set(FLAGS.figures) - set(figures))
  if unknown:
    raise app.UsageError(f'--figures: unknown {", ".join(unknown)} '
                         f'(known: {", ".join(figures)})')
  path = os.path.join(FLAGS.out_dir, 'measurements.json')
  measurements = {}
  if FLAGS.figures and os.path.exists(path):
    with open(path) as f:
      measurements = json.load(f)  # keep the entries of the figures not redrawn
  for name, make in figures.items():
    if not FLAGS.figures or name in FLAGS.figures:
      make(measurements)
  with open(path, 'w') as f:
    json.dump(measurements, f, indent=2, sort_keys=True, default=str)
  print(f'wrote {path}')


if __name__ == '__main__':
  app.run(main)

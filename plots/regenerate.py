"""Regenerates every figure of the README from the project's own runs and results.

  python plots/regenerate.py                      # figures from existing runs and results
  python plots/regenerate.py --train_missing      # first train the 2-D runs it needs
  python plots/regenerate.py --train_missing --train_poster   # and the 50-latent runs (long)
  python plots/regenerate.py --figures=nll_vs_k,learning_curve   # only these

Figures (written to --out_dir, with the numbers they show in measurements.json):
  latent_scatter.png   2-D latent posterior means of test digits: VAE/IWAE at k = 1, 5, 50
  reweighting.png      reconstructions from plain q samples vs importance-resampled (q_IW) ones
  posterior_shapes.png true posterior, q and q_IW (k = 1, 5, 50) on a grid, 2-D latent model
  nll_vs_k.png         test NLL (K = 5000) and active units vs k, from the committed results
  learning_curve.png   test NLL at the schedule's stage ends (paper schedule), from the results
  active_units.png     histograms of log10 Var_x(E_q[u]) per layer, VAE vs IWAE, from the results
  training_curves.png  -L_k and active units per epoch, read back from TensorBoard logs
  gradient_snr.png     encoder/decoder gradient signal-to-noise ratio vs k, IWAE vs DReG
  samples.png          64 samples of each shipped model (iwae_tf.pretrained) beside 64 test digits

Runs are found where train.py puts them (``rundir.default_run_dir``): the 2-D
runs are runs/<objective>_k<k>_2_poster (--latents=2 --epochs=10), the 50-latent
ones runs/<objective>_k<k>_50_poster; a model under iwae_tf/pretrained/<name> is used in
place of runs/<name>, and the paper's 3280-epoch model, once exported to
iwae_tf/pretrained/<objective>_k<k>_50_paper (evaluate.py --export), in place of both.
A figure whose runs or results are missing is skipped, with the command that
makes them, and its PNG and measurements are kept: measurements.json is only
ever updated with the figures drawn.
"""

import dataclasses
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from iwae_tf import cli  # noqa: E402

cli.quiet_tensorflow()

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

flags.DEFINE_string('results_root', 'results', 'Where evaluate.py\'s results are.')
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


def _config(objective, k, latents, schedule='poster'):
  """The configuration of a figure's run, as ``train.py`` would make it."""
  from iwae_tf import config as c
  from iwae_tf import rundir
  cfg = c.TrainConfig(model=c.ModelConfig(latents=latents, hidden=c.default_hidden(latents)),
                      objective=c.ObjectiveConfig(objective, k),
                      optim=c.OptimConfig(schedule=schedule), verbose=2,
                      epochs=FLAGS.latent2_epochs if latents == (2,) else None)
  return dataclasses.replace(cfg, run_dir=rundir.default_run_dir(cfg))


def _command(objective, k, latents):
  epochs = f' --epochs={FLAGS.latent2_epochs}' if latents == (2,) else ''
  return (f'python train.py --latents={",".join(map(str, latents))} --objective={objective} '
          f'--k={k} --schedule=poster{epochs}')


def _run(objective, k, latents):
  """The run directory of a figure's model: the paper's 3280-epoch model once
  exported (iwae_tf/pretrained/<objective>_k<k>_<latents>_paper), else the poster's
  70-epoch one, iwae_tf/pretrained/<name> if there, else runs/<name>. A paper-schedule
  run in runs/ is never used: it may be anywhere in its schedule."""
  from iwae_tf import rundir
  poster = _config(objective, k, latents).run_dir
  candidates = (rundir.pretrained_dir(_config(objective, k, latents, 'paper').run_dir),
                rundir.pretrained_dir(poster), poster)
  return next((c for c in candidates if _has_checkpoint(c)), poster)


def _has_checkpoint(run_dir):
  from iwae_tf import rundir
  return bool(rundir.saved_checkpoints(run_dir))


def _restore(objective, k, latents, figure):
  """``(run_dir, model, epoch)`` of a figure's run, or None (and a note) if missing."""
  from iwae_tf import evaluation
  run_dir = _run(objective, k, latents)
  if not _has_checkpoint(run_dir):
    print(f'{figure}: skipped, {run_dir} is missing; make it with: '
          f'{_command(objective, k, latents)}')
    return None
  _, model, _, epoch = evaluation.restore(run_dir)
  return run_dir, model, epoch


def train_missing(objective, k, latents, evaluate=False):
  from iwae_tf import evaluation, training
  cfg = _config(objective, k, latents)
  print(f'training {cfg.run_dir} for {cfg.total_epochs} epochs')
  training.train(cfg)  # resumes, or returns at once when complete
  if evaluate:
    done = evaluation.collect(FLAGS.results_root)
    if not any(r['run'] == os.path.basename(cfg.run_dir) and r['epoch'] == cfg.total_epochs
               for r in done):
      evaluation.evaluate_run(cfg.run_dir, results_root=FLAGS.results_root)


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
    run = _run(objective, k, (2,))
    if not _has_checkpoint(run):
      continue
    _, model, _, epoch = evaluation.restore(run)
    q = model.encoders[0](tf.constant(x))
    panels.append((f'{objective.upper()} k={k} ({epoch} epochs)', q.mean().numpy()))
    eps = layers.standard_normal_noise(tf.concat([[1], tf.shape(q.mean())], 0), tf.constant([0, 1]))
    samples.append(layers.reparameterize(q, eps)[0].numpy()[:1000])
    if objective == 'vae' and k == 1:
      panels.append(('IWAE k=1 (= VAE k=1)', panels[-1][1]))
      samples.append(samples[-1])
  if not panels:
    print('latent_scatter.png: skipped, no 2-D runs; make them with: '
          'python plots/regenerate.py --train_missing')
    return
  save(plotting.latent_scatter(panels, test['y'][:FLAGS.test_images], samples), 'latent_scatter.png')
  measurements['latent_scatter'] = {'panels': [t for t, _ in panels], 'images': int(len(x))}


def reweighting(test, measurements):
  import tensorflow as tf
  from iwae_tf import plotting, posterior
  restored = _restore('iwae', 5, (50,), 'reweighting.png')
  if restored is None:
    return
  run, model, epoch = restored
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
  from iwae_tf import plotting, posterior
  restored = _restore('vae', 1, (2,), 'posterior_shapes.png')
  if restored is None:
    return
  run, model, epoch = restored
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
  for r in evaluation.collect(FLAGS.results_root):
    cfg = r['config']
    if cfg['model']['latents'] == [50] and cfg['optim']['schedule'] == 'poster':
      results[(cfg['objective']['name'], cfg['objective']['k'])] = r
  if (('iwae', 5) not in results) or (('vae', 1) not in results):
    print(f'nll_vs_k.png: skipped, needs results of the poster runs VAE k=1 and IWAE k=5 in '
          f'{FLAGS.results_root}/; make them with: python plots/regenerate.py --train_poster')
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


def learning_curve(measurements):
  from iwae_tf import evaluation, plotting
  from iwae_tf import config as c
  curves, final = {}, {}
  results = evaluation.learning_curves(evaluation.read_results(FLAGS.results_root))
  for (dataset, layers, lat, obj, k), run_results in sorted(results.items()):
    points = {e: r['test']['nll']['mean'] for e, r in run_results.items() if r['k_nll'] == 5000}
    if not points:
      continue
    name = evaluation.curve_label(dataset, layers, lat, f'{obj.upper()} k={k}')
    epochs = sorted(points)
    curves[name] = (epochs, [points[e] for e in epochs])
    paper = evaluation.paper_nll(dataset, obj, lat, k)
    if paper is not None:
      final[name] = paper
  if not curves:
    print(f'learning_curve.png: skipped, no results of --schedule=paper runs in '
          f'{FLAGS.results_root}/; make them with: python train.py --objective=vae --k=1 '
          '--schedule=paper, then python evaluate.py --run_dir=runs/vae_k1_50_paper --milestones')
    return
  # Ticks at the stages' ends; a run's newest checkpoint between them is drawn unlabelled.
  epochs = sorted({e for x, _ in curves.values() for e in x} & set(c.STAGE_ENDS))
  fig = plotting.line_panels([
      dict(series=curves, xlabel='epoch (ticks: ends of the schedule\'s stages)',
           ylabel='test NLL (K = 5000, 10,000 images)', logx=True, hlines=final,
           xticks=epochs, title='paper schedule; dashed: paper, 3280 epochs')])
  save(fig, 'learning_curve.png')
  measurements['learning_curve'] = {n: {str(e): v for e, v in zip(*xy)} for n, xy in curves.items()}
  # IWAE against the k = 1 baseline and the VAE with the same samples, image by image.
  for (dataset, layers, lat, k, vae_k), paired in evaluation.learning_curve_pairs(results).items():
    name = evaluation.curve_label(dataset, layers, lat, f'IWAE k={k} - VAE k={vae_k}')
    measurements['learning_curve'][f'{name} (mean, paired stderr)'] = {
        str(e): d for e, d in paired.items()}


def active_units(measurements):
  """VAE against IWAE at the same k, from the committed results' variances:
  the pair measured at the same epoch, the latest such epoch (then the
  largest k), with the paper's setup."""
  from iwae_tf import evaluation, plotting
  pairs = {}
  for r in evaluation.read_results(FLAGS.results_root):  # every epoch measured, not the newest
    dataset, layers, obj, k, lat, epoch = evaluation.result_key(r)
    if obj in ('vae', 'iwae') and k > 1 and not evaluation.departures(r['config']):
      pairs.setdefault((epoch, k, dataset, lat), {})[obj] = r
  complete = sorted(key for key, pair in pairs.items() if len(pair) == 2)
  if not complete:
    print(f'active_units.png: skipped, needs results of a VAE and an IWAE run at the same k > 1 '
          f'and epoch in {FLAGS.results_root}/; make them with: python plots/regenerate.py '
          '--train_poster, or evaluate.py --milestones on the --schedule=paper runs')
    return
  epoch, k, dataset, lat = complete[-1]
  pair = pairs[complete[-1]]
  layers = [{f'{obj.upper()} k={k}': pair[obj]['posterior_mean_variances'][l]
             for obj in ('vae', 'iwae')} for l in range(len(pair['vae']['active_units']))]
  fig = plotting.variance_histograms(layers, title=f'{dataset.upper()}, {lat} latents, '
                                     f'{epoch} epochs')
  save(fig, 'active_units.png')
  measurements['active_units'] = {
      'epoch': epoch, 'k': k, 'latents': lat, 'dataset': dataset,
      **{obj: {'run': pair[obj]['run'], 'active_units': pair[obj]['active_units'],
               'inactive_median_log10_variance': [
                   _inactive_median_log10(v) for v in pair[obj]['posterior_mean_variances']]}
         for obj in pair}}


def _inactive_median_log10(variances):
  """Median log10 Var_x(E_q[u]) of a layer's inactive units (None if all are active)."""
  import numpy as np
  from iwae_tf import metrics
  v = np.asarray(variances, float)
  inactive = v[v <= metrics.ACTIVE_THRESHOLD]
  return float(np.median(np.log10(inactive))) if inactive.size else None


def training_curves(measurements):
  from iwae_tf import logs, plotting
  lk, au = {}, {}
  for objective, k in POSTER:
    run = _config(objective, k, (50,)).run_dir
    scalars = logs.read_scalars(os.path.join(run, 'tensorboard'))
    if f'train/L_{k}' not in scalars:
      continue
    steps, values = zip(*scalars[f'train/L_{k}'])
    lk[f'{objective.upper()} k={k}'] = (steps, [-v for v in values])
    steps, values = zip(*scalars['train/active_units/h1'])
    au[f'{objective.upper()} k={k}'] = (steps, values)
  if not lk:
    print('training_curves.png: skipped, no poster runs with TensorBoard logs in runs/; make '
          'them with: python plots/regenerate.py --train_poster')
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
  restored = _restore('iwae', 5, (50,), 'gradient_snr.png')
  if restored is None:
    return
  run, model, epoch = restored
  ks = (1, 3, 10, 30, 100)
  series = {'encoder': {}, 'decoder': {}}
  for estimator in ('iwae', 'dreg'):
    values = []
    for k in ks:
      objective = objectives.make(c.ObjectiveConfig('iwae', k, estimator))
      values.append(metrics.gradient_snr(model, objective, test['x'][:FLAGS.snr_images],
                                         FLAGS.snr_draws))
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


def samples(test, measurements, n=64, seed=0):
  """Bernoulli means of ``n`` ancestral samples from each shipped model, beside
  ``n`` binarised test digits (the original code's ``samples.jpg``)."""
  from iwae_tf import plotting, pretrained
  names = pretrained.names()
  if not names:
    print('samples.png: skipped, no model in iwae_tf/pretrained/ (evaluate.py --export)')
    return
  models = {name: pretrained.load(name) for name in names}
  grids = [test['x'][:n]] + [m.sample(n, seed) for m in models.values()]
  titles = ['test digits'] + [f'{m.config.objective.name.upper()} k={m.config.objective.k}, '
                              f'{m.epoch} epochs' for m in models.values()]
  save(plotting.image_grids(grids, titles), 'samples.png')
  measurements['samples'] = {'models': {name: m.epoch for name, m in models.items()},
                             'samples': n, 'seed': seed}


def main(argv):
  del argv
  cli.start_tensorflow()
  from iwae_tf import data, rundir
  if FLAGS.train_missing:
    for objective, k in LATENT2:
      train_missing(objective, k, (2,))
  if FLAGS.train_poster:
    for objective, k in POSTER:
      train_missing(objective, k, (50,), evaluate=True)
  os.makedirs(FLAGS.out_dir, exist_ok=True)
  mnist = data.load_mnist()
  test = {'x': data.binarize_fixed(mnist.x_test, 0), 'y': mnist.y_test}
  figures = {'latent_scatter': lambda m: scatter(test, m),
             'reweighting': lambda m: reweighting(test, m),
             'posterior_shapes': lambda m: posterior_shapes(test, m),
             'nll_vs_k': nll_vs_k, 'learning_curve': learning_curve,
             'active_units': active_units,
             'training_curves': training_curves,
             'gradient_snr': lambda m: gradient_snr(test, m),
             'samples': lambda m: samples(test, m)}
  unknown = sorted(set(FLAGS.figures) - set(figures))
  if unknown:
    raise app.UsageError(f'--figures: unknown {", ".join(unknown)} '
                         f'(known: {", ".join(figures)})')
  path = os.path.join(FLAGS.out_dir, 'measurements.json')
  measurements = {}
  if os.path.exists(path):
    try:
      with open(path) as f:
        measurements = json.load(f)  # the entries of figures not redrawn are kept
    except ValueError as e:
      from iwae_tf import errors
      raise errors.IWAEError(f'{path}: unreadable ({e}); restore it (git checkout {path}) '
                             'or remove it to start it anew') from None
  drawn = {}
  for name, make in figures.items():
    if not FLAGS.figures or name in FLAGS.figures:
      make(drawn)
  if not drawn:
    print(f'no figure drawn; {path} left as it was')
    return
  measurements.update(json.loads(json.dumps(drawn, default=str)))
  rundir.write_json_atomic(path, measurements)
  print(f'wrote {path} ({", ".join(sorted(drawn))} updated)')


if __name__ == '__main__':
  app.run(lambda argv: cli.run_main(main, argv))

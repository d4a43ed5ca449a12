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

The figures themselves are iwae_tf/figures.py; this script parses its flags,
finds their inputs and saves them. Runs are the named figure runs
(``experiments.figure_run``) where train.py puts them: the 2-D runs are
runs/<objective>_k<k>_2_poster (--latents=2 --epochs=10), the 50-latent ones
runs/<objective>_k<k>_50_poster; a model under iwae_tf/pretrained/<name> is used
in place of runs/<name>, and the paper's 3280-epoch model, once exported to
iwae_tf/pretrained/<objective>_k<k>_50_paper (evaluate.py --export), in place of
both. A figure whose runs or results are missing is skipped, with the command
that makes them, and its PNG and measurements are kept: measurements.json is
only ever updated with the figures drawn.
"""

import dataclasses
import os

from iwae_tf import cli

cli.quiet_tensorflow()
cli.configure_xla()

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


def _experiment(objective, k, latents):
  from iwae_tf import experiments  # pylint: disable=import-outside-toplevel
  return experiments.figure_run(objective, k, latents,
                                FLAGS.latent2_epochs if latents == '2' else None)


def _run(objective, k, latents):
  """The run directory of a figure's model: the paper's 3280-epoch model once
  exported (iwae_tf/pretrained/<objective>_k<k>_<latents>_paper), else the poster's
  70-epoch one, iwae_tf/pretrained/<name> if there, else runs/<name>. A paper-schedule
  run in runs/ is never used: it may be anywhere in its schedule."""
  from iwae_tf import experiments, rundir  # pylint: disable=import-outside-toplevel
  poster = _experiment(objective, k, latents).run_dir()
  candidates = (rundir.pretrained_dir(experiments.run(objective, k, latents).run_dir()),
                rundir.pretrained_dir(poster), poster)
  return next((c for c in candidates if _has_checkpoint(c)), poster)


def _has_checkpoint(run_dir):
  from iwae_tf import rundir  # pylint: disable=import-outside-toplevel
  return bool(rundir.saved_checkpoints(run_dir))


def _restore(objective, k, latents):
  """``(model, run_dir, epoch)`` of a figure's run."""
  from iwae_tf import checkpoints, figures  # pylint: disable=import-outside-toplevel
  run_dir = _run(objective, k, latents)
  if not _has_checkpoint(run_dir):
    raise figures.Missing(f'{run_dir} is missing; make it with: '
                          f'{" ".join(_experiment(objective, k, latents).train_command())}')
  _, model, _, epoch = checkpoints.restore(run_dir)
  return model, run_dir, epoch


def train_missing(objective, k, latents, evaluate=False):
  from iwae_tf import evaluation, results, training  # pylint: disable=import-outside-toplevel
  cfg = dataclasses.replace(_experiment(objective, k, latents).config(), verbose=2)
  print(f'training {cfg.run_dir} for {cfg.total_epochs} epochs')
  training.train(cfg)  # resumes, or returns at once when complete
  if evaluate:
    done = results.collect(FLAGS.results_root)
    if not any(r.run == os.path.basename(cfg.run_dir) and r.epoch == cfg.total_epochs
               for r in done):
      evaluation.evaluate_run(cfg.run_dir, results_root=FLAGS.results_root)


def _figures(test):
  """``{name: make}``: each ``make()`` gathers a figure's inputs and returns
  what its ``figures`` function returns."""
  # pylint: disable=import-outside-toplevel
  from iwae_tf import experiments, figure_files, figures, pretrained, results
  x = test['x']

  def latent_scatter():
    models = []
    for o, k in experiments.LATENT2_RUNS:  # the 2-D runs there are, in panel order
      try:
        model, _, epoch = _restore(o, k, '2')
      except figures.Missing:
        continue
      models.append((o, k, model, epoch))
    return figures.latent_scatter(models, x[:FLAGS.test_images], test['y'][:FLAGS.test_images])

  def training_curves():
    return figures.training_curves([
        (o, k, os.path.join(_experiment(o, k, '50').run_dir(), 'tensorboard'))
        for o, k in experiments.POSTER_RUNS])

  return {
      'latent_scatter': latent_scatter,
      'reweighting': lambda: figures.reweighting(*_restore('iwae', 5, '50'), x),
      'posterior_shapes': lambda: figures.posterior_shapes(*_restore('vae', 1, '2'), x,
                                                           FLAGS.grid, FLAGS.draws),
      **figure_files.from_results(list(results.read_results(FLAGS.results_root))),
      'training_curves': training_curves,
      'gradient_snr': lambda: figures.gradient_snr(*_restore('iwae', 5, '50'),
                                                   x[:FLAGS.snr_images], FLAGS.snr_draws),
      'samples': lambda: figures.samples({n: pretrained.load(n) for n in pretrained.names()}, x),
  }


def main(argv):
  del argv
  cli.start_tensorflow()
  # pylint: disable=import-outside-toplevel
  from iwae_tf import config, datasets, experiments, figure_files, figures
  if FLAGS.train_missing:
    for objective, k in experiments.LATENT2_RUNS:
      train_missing(objective, k, '2')
  if FLAGS.train_poster:
    for objective, k in experiments.POSTER_RUNS:
      train_missing(objective, k, '50', evaluate=True)
  os.makedirs(FLAGS.out_dir, exist_ok=True)
  mnist = datasets.mnist.load()
  test = {'x': datasets.binarize_fixed(mnist.x_test, config.DataConfig.eval_seed),
          'y': mnist.y_test}
  makers = _figures(test)
  unknown = sorted(set(FLAGS.figures) - set(makers))
  if unknown:
    raise app.UsageError(f'--figures: unknown {", ".join(unknown)} '
                         f'(known: {", ".join(makers)})')
  figure_files.read_measurements(FLAGS.out_dir)  # unreadable: refused before any drawing
  drawn = {}
  for name, make in makers.items():
    if FLAGS.figures and name not in FLAGS.figures:
      continue
    try:
      drawn[name] = make()
    except figures.Missing as e:
      print(f'{name}.png: skipped, {e}')
  if not drawn:
    print(f'no figure drawn; {os.path.join(FLAGS.out_dir, figure_files.MEASUREMENTS)} '
          'left as it was')
    return
  figure_files.write(drawn, FLAGS.out_dir)


if __name__ == '__main__':
  app.run(lambda argv: cli.run_main(main, argv))

"""The figures' choices: which model a figure uses (plots/regenerate.py), and
which committed results it pairs (iwae_tf/figures.py). The plotting functions
they call are tested in test_posterior_and_plots.py."""

import importlib.util
import os

import numpy as np
import pytest

from iwae_tf import figures
from iwae_tf import results as results_lib
from iwae_tf import rundir
from helpers import write_result

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def regenerate():
  spec = importlib.util.spec_from_file_location(
      'regenerate', os.path.join(ROOT, 'plots', 'regenerate.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not module.FLAGS.is_parsed():
    module.FLAGS.mark_as_parsed()  # the defaults
  return module


def _checkpoint(run_dir, epoch):
  """A checkpoint as ``rundir.saved_checkpoints`` finds it: by its files."""
  os.makedirs(os.path.join(run_dir, 'checkpoints'), exist_ok=True)
  open(os.path.join(run_dir, 'checkpoints', f'ckpt-{epoch}.index'), 'w').close()


def test_a_figure_uses_the_exported_paper_model_first(regenerate, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  run = lambda: regenerate._run('iwae', 5, '50')  # noqa: E731
  assert run() == os.path.join('runs', 'iwae_k5_50_poster')  # nothing there: the poster's name
  _checkpoint('runs/iwae_k5_50_poster', 70)
  _checkpoint('runs/iwae_k5_50_paper', 2000)  # mid-schedule: never used
  assert run() == os.path.join('runs', 'iwae_k5_50_poster')
  _checkpoint(os.path.join(rundir.PRETRAINED_ROOT, 'iwae_k5_50_poster'), 70)
  assert run() == os.path.join(rundir.PRETRAINED_ROOT, 'iwae_k5_50_poster')
  _checkpoint(os.path.join(rundir.PRETRAINED_ROOT, 'iwae_k5_50_paper'), 3280)
  assert run() == os.path.join(rundir.PRETRAINED_ROOT, 'iwae_k5_50_paper')
  assert regenerate._run('vae', 1, '50') == os.path.join('runs', 'vae_k1_50_poster')


def _result(root, run, obj, k, epoch, ll=None, variances=None, data=None):
  """A committed result of run ``<objective>_k<k>_50_<schedule>[_fixed]``."""
  write_result(root, run, obj, k, ll, epoch, variances=variances,
               config={'data': data or {}, 'optim': {'schedule': run.split('_')[3]}})


def test_active_units_pairs_the_latest_common_epoch_without_departures(tmp_path):
  rng = np.random.default_rng(0)
  var = lambda active: np.concatenate([10 ** rng.uniform(-1, 0, active),  # noqa: E731
                                       10 ** rng.uniform(-5, -3, 50 - active)])
  for epoch, (vae, iwae) in {40: (20, 23), 121: (19, 24)}.items():
    _result(tmp_path, 'vae_k5_50_paper', 'vae', 5, epoch, variances=var(vae))
    _result(tmp_path, 'iwae_k5_50_paper', 'iwae', 5, epoch, variances=var(iwae))
  _result(tmp_path, 'iwae_k5_50_paper', 'iwae', 5, 364, variances=var(25))  # no VAE at 364
  _result(tmp_path, 'vae_k5_50_paper_fixed', 'vae', 5, 364, variances=var(18),
          data={'binarization': 'fixed', 'train_binarization_seed': 0})  # a departure
  _result(tmp_path, 'vae_k1_50_paper', 'vae', 1, 1093, variances=var(19))  # k = 1: no pair
  fig, got = figures.active_units(results_lib.read_results(str(tmp_path)))
  assert (got['epoch'], got['k'], got['latents']) == (121, 5, '50')
  assert {n: got[n]['run'] for n in ('vae', 'iwae')} == {
      'vae': 'vae_k5_50_paper', 'iwae': 'iwae_k5_50_paper'}
  assert (got['vae']['active_units'], got['iwae']['active_units']) == ([19], [24])
  # The inactive units' log10 variances are drawn from U(-5, -3) above.
  for name in ('vae', 'iwae'):
    median, = got[name]['inactive_median_log10_variance']
    assert -4.6 < median < -3.4
  assert len(fig.axes) == 1


def test_learning_curve_pairs_iwae_with_both_baselines(tmp_path):
  rng = np.random.default_rng(1)
  difficulty = rng.normal(-90, 25, 10000)
  ll = {}
  for run, obj, k, shift in [('iwae_k5_50_paper', 'iwae', 5, 1.0),
                             ('vae_k1_50_paper', 'vae', 1, 0.0),
                             ('vae_k5_50_paper', 'vae', 5, 0.6)]:
    for epoch in (1, 4) if k == 5 else (1, 4, 13):
      ll[run, epoch] = difficulty + shift + epoch + rng.normal(0, 0.2, 10000)
      _result(tmp_path, run, obj, k, epoch, ll=ll[run, epoch])
  fig, got = figures.learning_curve(results_lib.read_results(str(tmp_path)))
  assert got['VAE k=1'] == {str(e): pytest.approx(-ll['vae_k1_50_paper', e].mean(), abs=1e-3)
                            for e in (1, 4, 13)}
  for vae_k in (1, 5):
    paired = got[f'IWAE k=5 - VAE k={vae_k} (mean, paired stderr)']
    assert sorted(paired) == ['1', '4']  # only the epochs both runs were measured at
    for e in (1, 4):
      d = -(ll['iwae_k5_50_paper', e] - ll[f'vae_k{vae_k}_50_paper', e])
      diff, se = paired[str(e)]
      assert diff == pytest.approx(d.mean(), abs=1e-3)
      assert se == pytest.approx(d.std() / 100, rel=1e-2)
  assert len(fig.axes) == 1  # nothing measured late: no second panel


def test_learning_curve_draws_the_last_stages_again_in_each_runs_colour(tmp_path):
  nll = {('vae_k1_50_paper', 'vae', 1): {13: 95.0, 364: 88.0, 1093: 87.0, 3280: 86.4},
         ('iwae_k5_50_paper', 'iwae', 5): {13: 94.0, 121: 88.5}}  # none late: an empty series
  for (run, obj, k), curve in nll.items():
    for epoch, value in curve.items():
      _result(tmp_path, run, obj, k, epoch, ll=np.full(10000, -value))
  fig, _ = figures.learning_curve(results_lib.read_results(str(tmp_path)))
  assert len(fig.axes) == 2
  whole, late = ([(list(line.get_xdata()), line.get_color()) for line in ax.get_lines()
                  if line.get_linestyle() == '-'] for ax in fig.axes)
  assert whole == [([13, 121], whole[0][1]), ([13, 364, 1093, 3280], whole[1][1])]
  assert late == [([], whole[0][1]), ([364, 1093, 3280], whole[1][1])]
  lo, hi = fig.axes[1].get_ylim()  # the late points and the paper's final numbers, not epoch 13
  assert 83 < lo < 85.54 and 88 < hi < 90
  assert fig.axes[1].get_legend() is None


def test_samples_figure_draws_every_shipped_model():
  from iwae_tf import pretrained
  models = {n: pretrained.load(n) for n in pretrained.names()}
  fig, got = figures.samples(models, pretrained.test_images(64), n=16)
  assert len(fig.axes) == 1 + len(models)
  assert got['models'] == {n: 3280 for n in pretrained.names()}


def test_a_figure_without_its_inputs_says_how_to_make_them(tmp_path):
  with pytest.raises(figures.Missing, match='--train_poster'):
    figures.nll_vs_k([])
  with pytest.raises(figures.Missing, match='--milestones'):
    figures.learning_curve(results_lib.read_results(str(tmp_path)))

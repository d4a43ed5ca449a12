"""Tests of evaluate.py's library: restoring runs, results files, pruning, the table."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from iwae_tf import checkpoints
from iwae_tf import config
from iwae_tf import evaluation
from iwae_tf import metrics
from iwae_tf import paper
from iwae_tf import results as results_lib
from iwae_tf import rundir
from iwae_tf import tables as tables_lib
from iwae_tf import training
from helpers import binary, fake_result, make_model, tiny_config, write_result

tfd = tfp.distributions


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory):
  path = tmp_path_factory.mktemp('eval') / 'run'
  training.train(tiny_config(path, epochs=2))
  return str(path)


def test_evaluate_run_writes_results(run_dir):
  results = os.path.join(os.path.dirname(run_dir), 'results')
  r = evaluation.evaluate_run(run_dir, k_nll=200, ks=(1, 5), limit_test=40, batch_size=20,
                              chunk=64, train_subset=20, prune=True, progress=lambda s: None,
                              results_root=results)
  path = os.path.join(results, 'run', 'eval-ckpt2-K200-n40.json')
  with open(path) as f:
    saved = json.load(f)
  assert (r.data, r.path) == (saved, path)  # what was written, read back
  # The per-image estimates beside it average to the reported NLL.
  with np.load(path.replace('.json', '.npz')) as f:
    assert f['test_log_likelihood'].shape == (40,)
    np.testing.assert_allclose(-f['test_log_likelihood'].mean(), t_nll := saved['test']['nll']['mean'],
                               rtol=1e-6)
    np.testing.assert_allclose(-f['test_pruned_log_likelihood'].mean(),
                               saved['test_pruned']['nll']['mean'], rtol=1e-6)
  assert t_nll > 0 and saved['test_size'] == 10000
  assert saved['epoch'] == 2 and saved['checkpoint'].endswith('ckpt-2')
  assert saved['k_nll'] == 200 and saved['num_test'] == 40 and len(saved['data_sha256']) == 64
  t = saved['test']
  # NLL >= -L_5 >= -L_1 on average (the estimate is the tightest bound).
  assert t['nll']['mean'] <= -t['L_5']['mean'] <= -t['L_1']['mean']
  assert 'train' in saved and saved['num_train'] == 20 and 'test_pruned' in saved
  assert len(saved['active_units']) == 1 and len(saved['pruned_units'][0]) == 3 - saved['active_units'][0]


def test_results_are_not_overwritten_silently(run_dir, tmp_path):
  kw = dict(k_nll=10, ks=(1,), limit_test=20, batch_size=20, progress=lambda s: None,
            results_root=str(tmp_path))
  evaluation.evaluate_run(run_dir, **kw)
  path = rundir.result_path(run_dir, 2, 10, 20, str(tmp_path))
  assert path == os.path.join(tmp_path, 'run', 'eval-ckpt2-K10-n20.json')
  before = open(path).read()
  nll = json.loads(before)['test']['nll']
  with pytest.raises(evaluation.EvaluationError,
                     match=rf"exists \(test NLL {nll['mean']:.2f} ± {nll['stderr']:.2f}, K = 10\); "
                           'to measure again, pass --results_root'):
    evaluation.evaluate_run(run_dir, **kw)
  assert open(path).read() == before
  evaluation.evaluate_run(run_dir, overwrite=True, seed=7, **kw)
  assert json.load(open(path))['seed'] == 7
  evaluation.evaluate_run(run_dir, checkpoint='1', **kw)  # another checkpoint, another file
  assert json.load(open(path.replace('ckpt2', 'ckpt1')))['epoch'] == 1


@pytest.mark.parametrize('kwargs,message', [({'k_nll': 0}, 'k_nll'), ({'chunk': 0}, 'chunk'),
                                            ({'limit_test': 0}, 'limit_test'),
                                            ({'ks': (1, 0)}, 'ks')])
def test_measurement_settings_are_range_checked(run_dir, kwargs, message):
  with pytest.raises(evaluation.EvaluationError, match=f'--{message} must be >= '):
    evaluation.evaluate_run(run_dir, **kwargs)


def test_missing_and_mismatched_runs(run_dir, tmp_path):
  with pytest.raises(evaluation.EvaluationError, match='no such run directory'):
    evaluation.evaluate_run(str(tmp_path / 'nothing'))
  (tmp_path / 'empty').mkdir()
  with pytest.raises(rundir.RunDirError, match='no config.json'):
    evaluation.evaluate_run(str(tmp_path / 'empty'))
  with pytest.raises(checkpoints.CheckpointError, match='no such checkpoint'):
    checkpoints.restore(run_dir, checkpoint='99')
  # A run directory whose config no longer matches its checkpoints.
  other = tmp_path / 'other'
  os.makedirs(other)
  cfg = json.load(open(os.path.join(run_dir, 'config.json')))
  cfg['model']['latents'] = [4]
  json.dump(cfg, open(other / 'config.json', 'w'))
  os.symlink(os.path.join(run_dir, 'checkpoints'), other / 'checkpoints')
  with pytest.raises(checkpoints.CheckpointError, match='does not match the architecture'):
    checkpoints.restore(str(other))


def test_restored_model_equals_trained_model(tmp_path):
  trained = training.train(tiny_config(tmp_path / 'r', epochs=1))
  _, restored, _, epoch = checkpoints.restore(str(tmp_path / 'r'))
  assert epoch == 1
  for a, b in zip(trained.model.weights, restored.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize('latents,hidden', [((3,), (8,)), ((3, 2), (8,)), ((3, 2), ())])
def test_pruning_removes_units_exactly(latents, hidden):
  # hidden=(): linear-Gaussian layers, whose heads read the units directly.
  m = make_model(latents, hidden=tuple(hidden for _ in latents), data_dim=10)
  x = binary(6, 10)
  m.prune([list(range(1, d)) for d in latents])  # keep unit 0 only
  seed = tf.constant([1, 2], tf.int32)
  noise = m.draw_noise(4, 6, seed)
  hs, log_q = m.encode(x, noise)
  log_w = m.log_weights(x, noise)
  # The pruned units' terms cancel exactly: recompute with unit 0 of each layer only.
  keep = lambda d: tfd.Independent(tfd.Normal(d.distribution.loc[..., :1],  # noqa: E731
                                              d.distribution.scale[..., :1]), 1)
  expect = tfd.Normal(0., 1.).log_prob(hs[-1][..., 0]) + m.decoders[0](hs[0]).log_prob(x)
  expect -= keep(m.encoders[0](x)).log_prob(hs[0][..., :1])
  for l in range(1, len(latents)):
    expect += keep(m.decoders[l](hs[l])).log_prob(hs[l - 1][..., :1])
    expect -= keep(m.encoders[l](hs[l - 1])).log_prob(hs[l][..., :1])
  np.testing.assert_allclose(log_w, expect, rtol=1e-5, atol=1e-4)
  # And the pruned units no longer influence anything downstream.
  hs2 = [tf.concat([h[..., :1], 5.0 + h[..., 1:]], -1) for h in hs]
  np.testing.assert_allclose(m.decoders[0](hs[0]).log_prob(x), m.decoders[0](hs2[0]).log_prob(x),
                             rtol=1e-6)
  assert metrics.active_units(metrics.posterior_mean_variances(m, x.numpy()))[0] <= 1


def test_table_and_readme_block(tmp_path):
  md = tables_lib.table([results_lib.Result(r) for r in [
      fake_result('iwae', 5, [50], 89.1, [21]), fake_result('vae', 1, [50], 90.2, [17]),
      fake_result('iwae', 5, [100, 50], 87.0, [30, 11]), fake_result('iwae', 5, [2], 140.0, [2])]])
  lines = md.strip().splitlines()
  assert len(lines) == 6
  # Not the paper's architecture: none of its (or the poster's) numbers.
  assert '| MNIST | 1 | IWAE | 5 | 2 | 70 | 140.00 ± 0.30 | 5000 | 2 | – | – | – | – | – |' in lines
  assert lines[-1] == '| MNIST | 2 | IWAE | 5 | 100-50 | 70 | 87.00 ± 0.30 | 5000 | 30/11 | – | 83.89 | – | – | – |'
  assert '| MNIST | 1 | IWAE | 5 | 50 | 70 | 89.10 ± 0.30 | 5000 | 21 | – | 85.54 | 99.70 | 14 | – |' in lines
  assert '| MNIST | 1 | VAE | 1 | 50 | 70 | 90.20 ± 0.30 | 5000 | 17 | – | 86.76 | – | – | – |' in lines
  readme = tmp_path / 'README.md'
  readme.write_text(f'intro\n{tables_lib.BEGIN}\nold\n{tables_lib.END}\nrest\n')
  tables_lib.write_table(md, str(readme))
  text = readme.read_text()
  assert 'old' not in text and md in text and text.startswith('intro') and text.endswith('rest\n')
  (tmp_path / 'bare.md').write_text('no markers')
  with pytest.raises(tables_lib.TableError, match='no .* block'):
    tables_lib.write_table(md, str(tmp_path / 'bare.md'))


def test_collect_keeps_full_test_results_only(tmp_path):
  for name, n, epoch in [('a', 10000, 70), ('a', 10000, 30), ('b', 500, 70)]:
    d = tmp_path / name
    d.mkdir(parents=True, exist_ok=True)
    r = fake_result('iwae', 5, [50], 89.0 + epoch / 100, [20], epoch)
    r['num_test'] = n
    (d / f'eval-{epoch}.json').write_text(json.dumps(r))
  got = results_lib.collect(str(tmp_path))
  assert [(r.run, r.epoch) for r in got] == [('a', 70)]
  # Another data set's full test set is a full test set too.
  r = fake_result('vae', 1, [50], 100.0, [9])
  r['num_test'] = r['test_size'] = 8070
  (tmp_path / 'c').mkdir()
  (tmp_path / 'c' / 'eval-70.json').write_text(json.dumps(r))
  assert sorted(r.run for r in results_lib.collect(str(tmp_path))) == ['a', 'c']


def test_paired_differences_from_per_image_estimates(tmp_path):
  """The paired standard error is that of the per-image differences: small
  when the runs' estimates move together, whatever each run's own spread."""
  rng = np.random.default_rng(0)
  difficulty = rng.normal(-90, 25, size=10000)  # shared by both models
  lls = {'iwae': difficulty + 0.5 + rng.normal(0, 0.2, 10000),
         'vae': difficulty + rng.normal(0, 0.2, 10000)}
  results = []
  for obj, ll in lls.items():
    d = tmp_path / f'{obj}_k5'
    d.mkdir()
    np.savez_compressed(d / 'eval.npz', test_log_likelihood=ll.astype(np.float32))
    r = fake_result(obj, 5, [50], float(-ll.mean()), [20])
    r.update(per_image='eval.npz', data_sha256='x', eval_binarization_seed=0)
    (d / 'eval-70.json').write_text(json.dumps(r))
    results.append(r)
  got = results_lib.collect(str(tmp_path))
  diff, se = results_lib.paired_differences(got)[(results_lib.Key('mnist', 1, 'iwae', 5, '50', 70), '')]
  d = -(lls['iwae'] - lls['vae'])
  assert diff == pytest.approx(d.mean(), abs=1e-3) and diff == pytest.approx(-0.5, abs=0.02)
  assert se == pytest.approx(d.std() / 100, rel=1e-2)
  assert se < 0.1 * results[0]['test']['nll']['stderr']  # far below each run's own +-
  md = tables_lib.table(got)
  assert f'| MNIST | 1 | 5 | 50 | 70 | {diff:+.2f} ± {se:.2f} | -0.93 | – |' in md
  # Different test images (another evaluation seed): no pairing.
  r = json.loads((tmp_path / 'vae_k5' / 'eval-70.json').read_text())
  r['eval_binarization_seed'] = 1
  (tmp_path / 'vae_k5' / 'eval-70.json').write_text(json.dumps(r))
  assert not results_lib.paired_differences(results_lib.collect(str(tmp_path)))


def test_departures_from_the_paper_are_flagged():
  cfg = config.TrainConfig().to_dict()
  assert paper.departures(json.loads(json.dumps(cfg))) == []
  cfg['optim']['beta1'] = 0.99
  cfg['data']['validation_size'] = 400
  assert paper.departures(json.loads(json.dumps(cfg))) == ['beta1=0.99', '400 held out']
  cfg['data']['binarization'], cfg['data']['train_binarization_seed'] = 'fixed', 3
  assert paper.departures(json.loads(json.dumps(cfg)))[-1] == 'fixed binarisation (seed 3)'


def test_switching_objectives_rows_and_paired_difference(tmp_path):
  """Table 2: runs started from one source for the same epochs are paired,
  the switched one against the one continued with the source's objective."""
  rng = np.random.default_rng(1)
  difficulty = rng.normal(-90, 25, size=10000)
  source = {'run_dir': 'runs/vae_k1_50_poster', 'epoch': 70,
            'objective': {'name': 'vae', 'k': 1}}
  iwae = difficulty + 0.3 + rng.normal(0, 0.1, 10000)
  vae = difficulty + rng.normal(0, 0.1, 10000)
  write_result(tmp_path, 'iwae_cont', 'iwae', 50, iwae, epoch=20, initialised_from=source)
  write_result(tmp_path, 'vae_cont', 'vae', 1, vae, epoch=20, initialised_from=source)
  # Same source, other epochs: not paired with either.
  write_result(tmp_path, 'vae_cont10', 'vae', 1, vae, epoch=10, initialised_from=source)
  got = results_lib.collect(str(tmp_path))
  switched = results_lib.switched_differences(got)
  key = (results_lib.Key('mnist', 1, 'vae → iwae', 50, '50', 20), 'vae_k1_50_poster (epoch 70)')
  assert list(switched) == [key]
  name, cont, diff, se = switched[key]
  assert name == 'IWAE k=50'
  d = -(iwae - vae)
  assert cont == 'VAE k=1' and diff == pytest.approx(d.mean(), abs=1e-3)
  assert diff == pytest.approx(-0.3, abs=0.01) and se == pytest.approx(d.std() / 100, rel=1e-2)
  md = tables_lib.table(got)
  assert '| MNIST | 1 | VAE k=1 → IWAE | 50 | 50 | 70 + 20 |' in md
  assert '| MNIST | 1 | VAE k=1 → VAE | 1 | 50 | 70 + 10 |' in md
  assert (f'| MNIST | vae_k1_50_poster (epoch 70) | 20 | IWAE k=50 | VAE k=1 '
          f'| {diff:+.2f} ± {se:.2f} |') in md


def test_paired_differences_keep_departures_apart(tmp_path):
  """A fixed-binarisation VAE is not the dynamic IWAE's baseline."""
  rng = np.random.default_rng(2)
  ll = rng.normal(-90, 25, size=10000)
  fixed = {'data': {'binarization': 'fixed', 'train_binarization_seed': 0}}
  write_result(tmp_path, 'iwae', 'iwae', 5, ll)
  write_result(tmp_path, 'vae_fixed', 'vae', 5, ll + 1)
  r = json.loads((tmp_path / 'vae_fixed' / 'eval-70.json').read_text())
  r['config'].update(fixed)
  r['train'] = {'nll': {'mean': r['test']['nll']['mean'] - 1.5}}  # --train_subset's
  (tmp_path / 'vae_fixed' / 'eval-70.json').write_text(json.dumps(r))
  got = results_lib.collect(str(tmp_path))
  assert results_lib.paired_differences(got) == {}
  assert 'fixed binarisation (seed 0)' in tables_lib.table(got)
  write_result(tmp_path, 'vae', 'vae', 5, ll + 0.75)
  got = results_lib.collect(str(tmp_path))
  assert list(results_lib.paired_differences(got)) == [
      (results_lib.Key('mnist', 1, 'iwae', 5, '50', 70), '')]
  # The fixed run against the same run with the paper's dynamic binarisation.
  (run, base, diff, se), = results_lib.departure_differences(got).values()
  assert (run.run, base.run) == ('vae_fixed', 'vae')
  assert (diff, se) == results_lib.paired_difference(run, base)
  assert diff == pytest.approx(-0.25, abs=1e-3) and se < 1e-4
  assert ('| MNIST | 1 | VAE | 5 | 50 | 70 | fixed binarisation (seed 0) | -0.25 ± 0.00 '
          '| -1.50 | – |') in tables_lib.table(got)


def test_milestones_and_pretrained_export(tmp_path):
  cfg = tiny_config(tmp_path / 'run', epochs=5)
  cfg = config.TrainConfig(**{**cfg.__dict__, 'optim': config.OptimConfig(schedule='paper')})
  training.train(cfg)
  kw = dict(k_nll=20, ks=(1,), limit_test=20, batch_size=20, progress=lambda s: None,
            results_root=str(tmp_path / 'results'))
  got = evaluation.evaluate_milestones(str(tmp_path / 'run'), **kw)
  assert sorted(got) == [1, 4, 5]  # the stage ends so far, and the latest
  again = evaluation.evaluate_milestones(str(tmp_path / 'run'), **kw)  # read back, not redone
  assert {e: r.data['test'] for e, r in again.items()} == {e: r.data['test'] for e, r in got.items()}
  assert all(again[e].data['seconds'] == got[e].data['seconds'] for e in got)
  out = tmp_path / 'pretrained' / 'tiny'
  checkpoints.export_pretrained(str(tmp_path / 'run'), str(out))
  names = [n for n, _ in tf.train.list_variables(str(out / 'checkpoints' / 'ckpt-5'))]
  assert not any(n.startswith('optimizer') for n in names)
  assert os.path.getsize(out / 'checkpoints' / 'ckpt-5.data-00000-of-00001') < 2e6
  again = evaluation.evaluate_run(str(out), **{**kw, 'results_root': str(tmp_path / 'r2')})
  assert again.data['test'] == got[5].data['test']  # the same model, the same numbers
  with pytest.raises(checkpoints.CheckpointError, match='not empty'):
    checkpoints.export_pretrained(str(tmp_path / 'run'), str(out))


def test_learning_curve_table_of_the_paper_schedule_runs(tmp_path):
  """Stage ends only, paper-setup runs only, and IWAE paired with the VAE at
  k = 1 and at its own k; written into its own README block."""
  rng = np.random.default_rng(3)
  difficulty = rng.normal(-90, 25, size=10000)
  ll = {}

  def write(run, obj, k, epoch, latents=(50,), **optim):
    ll[run, epoch] = difficulty - 10 / epoch + 0.1 * k * (obj == 'iwae') + rng.normal(0, .2, 10000)
    write_result(tmp_path, run, obj, k, ll[run, epoch], epoch, latents, [20 + k] * len(latents),
                 config={'optim': {'schedule': 'paper', **optim}, 'data': {}})

  for epoch in (1, 4, 13, 20):  # 20 is no stage end
    write('vae1', 'vae', 1, epoch)
  for epoch in (1, 4):
    write('iwae5', 'iwae', 5, epoch)
  write('vae5', 'vae', 5, 4)
  write('iwae5_beta', 'iwae', 5, 4, beta1=0.99)  # a departure: not on the curve
  write('iwae5_2l', 'iwae', 5, 1, latents=(100, 50))
  write('iwae5_2d', 'iwae', 5, 4, latents=(2,))
  results = list(results_lib.read_results(str(tmp_path)))
  nll = lambda run, e: f'{-ll[run, e].mean():.2f}'  # noqa: E731

  def paired(a, b, e):
    d = -(ll[a, e] - ll[b, e])
    return f'{d.mean():+.2f} ± {d.std() / 100:.2f}'

  assert tables_lib.learning_curve_table(results).splitlines() == [
      '| epoch | 1 | 4 | 13 | paper (3280) |', '|---|---|---|---|---|',
      f'| IWAE k = 5 (2 latents): test NLL |  | {nll("iwae5_2d", 4)} |  | – |',  # not the paper's
      '| IWAE k = 5 (2 latents): active units |  | 25 |  |  |',
      f'| VAE k = 1: test NLL | {nll("vae1", 1)} | {nll("vae1", 4)} | {nll("vae1", 13)} | 86.76 |',
      '| VAE k = 1: active units | 21 | 21 | 21 |  |',
      f'| VAE k = 5: test NLL |  | {nll("vae5", 4)} |  | 86.47 |',
      '| VAE k = 5: active units |  | 25 |  |  |',
      f'| IWAE k = 5: test NLL | {nll("iwae5", 1)} | {nll("iwae5", 4)} |  | 85.54 |',
      '| IWAE k = 5: active units | 25 | 25 |  |  |',
      f'| IWAE k = 5 (2 layers, 100-50 latents): test NLL | {nll("iwae5_2l", 1)} |  |  | 83.89 |',
      '| IWAE k = 5 (2 layers, 100-50 latents): active units | 25/25 |  |  |  |',
      f'| IWAE k = 5 − VAE k = 1, paired | {paired("iwae5", "vae1", 1)} '
      f'| {paired("iwae5", "vae1", 4)} |  | -1.22 |',
      f'| IWAE k = 5 − VAE k = 5, paired |  | {paired("iwae5", "vae5", 4)} |  | -0.93 |']
  assert tables_lib.learning_curve_table([]) == ''
  readme = tmp_path / 'README.md'
  readme.write_text(f'{tables_lib.BEGIN}\nmain\n{tables_lib.END}\n'
                    f'{tables_lib.CURVE_BEGIN}\nold\n{tables_lib.CURVE_END}\n')
  tables_lib.write_table('curve\n', str(readme), tables_lib.CURVE_BEGIN, tables_lib.CURVE_END)
  assert readme.read_text() == (f'{tables_lib.BEGIN}\nmain\n{tables_lib.END}\n'
                                f'{tables_lib.CURVE_BEGIN}\ncurve\n{tables_lib.CURVE_END}\n')


def test_departure_curve_table_pairs_each_departure_with_the_paper_setup_run(tmp_path):
  """The original procedure and another seed, each beside the paper-setup
  run of its key at the stage ends both were measured, image by image, at
  the largest K; other schedules and unpaired epochs left out."""
  rng = np.random.default_rng(4)
  difficulty = rng.normal(-90, 25, size=10000)
  ll = {}

  def write(run, epoch, optim=None, **config):
    ll[run, epoch] = difficulty - 10 / epoch + rng.normal(0, .2, 10000)
    write_result(tmp_path, run, 'vae', 1, ll[run, epoch], epoch, au=[30 - epoch],
                 config={'optim': {'schedule': 'paper', **(optim or {})}, 'data': {}, **config})

  for epoch in (1, 4, 20):
    write('vae1', epoch)
  for epoch in (1, 4, 13, 20):  # 13: the paper-setup run was not measured; 20: no stage end
    write('seed1', epoch, seed=1)
  write('original', 4, procedure='original', data={'validation_size': 400})
  write('poster_seed2', 4, optim={'schedule': 'poster'}, seed=2)  # not the paper's schedule
  # The same checkpoint at a smaller K, read after the K = 5000 file: not the one paired.
  smaller = json.loads((tmp_path / 'seed1' / 'eval-4.json').read_text())
  np.savez_compressed(tmp_path / 'seed1' / 'eval-4_K50.npz', test_log_likelihood=difficulty - 9)
  smaller.update(k_nll=50, per_image='eval-4_K50.npz')
  (tmp_path / 'seed1' / 'eval-4_K50.json').write_text(json.dumps(smaller))
  results = list(results_lib.read_results(str(tmp_path)))
  nll = lambda run, e: f'{-ll[run, e].mean():.2f}'  # noqa: E731

  def paired(a, e):
    d = -(ll[a, e] - ll['vae1', e])
    return f'{d.mean():+.2f} ± {d.std() / 100:.2f}'

  assert tables_lib.departure_curve_table(results).splitlines() == [
      '| epoch | 1 | 4 | paper (3280) |', '|---|---|---|---|',
      f'| VAE k = 1, original procedure: test NLL |  | {nll("original", 4)} | 86.76 |',
      '| VAE k = 1, original procedure: active units |  | 26 |  |',
      f'| VAE k = 1: original procedure − paper setup, paired |  | {paired("original", 4)} |  |',
      f'| VAE k = 1, seed=1: test NLL | {nll("seed1", 1)} | {nll("seed1", 4)} | 86.76 |',
      '| VAE k = 1, seed=1: active units | 29 | 26 |  |',
      f'| VAE k = 1: seed=1 − paper setup, paired | {paired("seed1", 1)} | {paired("seed1", 4)} |  |']
  assert tables_lib.departure_curve_table([r for r in results if not r.departures]) == ''
  block = (tables_lib.DEPARTURE_BEGIN, tables_lib.DEPARTURE_END)
  assert tables_lib.tables(results)[block] == tables_lib.departure_curve_table(results)


def test_runs_that_measured_the_same_experiment_are_named(tmp_path):
  """Two runs of one experiment (a run copied under another name) at a shared
  epoch: one warning naming both, and the tables keep the larger K, then the
  first read, rather than whichever came last."""
  rng = np.random.default_rng(5)
  ll = lambda: rng.normal(-90, 25, size=10000)  # noqa: E731
  paper_cfg = {'optim': {'schedule': 'paper'}, 'data': {}}
  for run, epochs in (('a', (1, 4)), ('b', (4, 13)), ('c', (4,))):
    for epoch in epochs:
      write_result(tmp_path, run, 'vae', 1, ll(), epoch, config=paper_cfg)
  write_result(tmp_path, 'd', 'vae', 1, ll(), 4, config={**paper_cfg, 'seed': 1})  # another seed
  write_result(tmp_path, 'e', 'vae', 5, ll(), 4, config=paper_cfg)  # another k
  said = []
  results = list(results_lib.read_results(str(tmp_path), warn=said.append))
  assert len(results) == 7
  assert said == ['runs a, b, c all measured MNIST 1-layer VAE k=1, latents 50 at epoch 4; the '
                  'paired and learning-curve tables show one result per epoch (the largest K, '
                  'then the first read)']
  curve = results_lib.learning_curves(results)[results_lib.Key('mnist', 1, 'vae', 1, '50', None)]
  assert {e: r.run for e, r in curve.items()} == {1: 'a', 4: 'a', 13: 'b'}
  # At a larger K, b's measurement of epoch 4 is the one kept.
  bigger = json.loads((tmp_path / 'b' / 'eval-4.json').read_text())
  (tmp_path / 'b' / 'eval-4.json').write_text(json.dumps({**bigger, 'k_nll': bigger['k_nll'] * 2}))
  results = list(results_lib.read_results(str(tmp_path), warn=said.append))
  curve = results_lib.learning_curves(results)[results_lib.Key('mnist', 1, 'vae', 1, '50', None)]
  assert curve[4].run == 'b'
  assert list(results_lib.shared_experiments([r for r in results if r.run != 'c'])) == [
      (results_lib.Key('mnist', 1, 'vae', 1, '50', None), '')]
  assert results_lib.shared_experiments([r for r in results if r.run in 'ade']) == {}


def test_eta_reporter_says_images_done_and_time_left():
  said, now = [], [0.0]
  report = evaluation.eta_reporter(said.append, 'NLL', every=30, clock=lambda: now[0])
  for done, t in [(100, 10), (200, 31), (300, 40), (1000, 200)]:
    now[0] = t
    report(done, 1000)
  assert said == ['NLL: 200/1000 images, about 2 min left']  # 31 s for 200: 4 x 31 s more

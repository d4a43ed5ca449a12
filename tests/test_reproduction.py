"""The named experiments and the reproduction queue (reproduce.py), on tiny runs."""

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from helpers import write_result
from iwae_tf import config
from iwae_tf import experiments
from iwae_tf import packing
from iwae_tf import reproduction
from iwae_tf import rundir
from iwae_tf import tables

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_table1_is_ten_distinct_runs_of_the_paper():
  exps = experiments.SETS['table1']
  names = [e.name for e in exps]
  assert len(set(names)) == 10
  assert {'vae_k1_50_paper', 'iwae_k50_50_paper', 'iwae_k50_100-50_paper'} <= set(names)
  assert 'iwae_k1_50_paper' not in names  # k = 1: IWAE is the VAE
  for e in exps:
    cfg = e.config()
    assert cfg.total_epochs == 3280 and e.milestones[-1] == 3280 and 1593 in e.milestones
    assert cfg.procedure == 'paper' and not cfg.seed and e.k_nll == 5000 and e.limit_test is None


def test_commands_rebuild_the_same_configuration():
  """What train.py makes of an experiment's command line is its config."""
  for e in experiments.QUEUE:
    args = dict(a[2:].split('=', 1) for a in e.train_command()[2:])
    typed = {}
    for name, text in args.items():
      default = dict(e.flags).get(name, text)
      typed[name] = type(default)(text) if not isinstance(default, str) else text
    assert config.from_flags(**typed) == e.config(), e.name


def test_the_queue_starts_with_the_longest_and_most_wanted():
  names = [e.name for e in experiments.select(['seeds', 'table1', 'original'])]
  assert names[:6] == ['iwae_k50_50_paper', 'vae_k5_50_paper', 'vae_k1_100-50_paper',
                       'vae_k1_50_paper_original', 'vae_k1_50_paper_seed1', 'iwae_k5_100-50_paper']
  assert len(names) == len(set(names)) == 14
  table2 = experiments.SETS['table2']
  assert {e.source.name for e in table2} == {'vae_k1_50_paper', 'iwae_k50_50_paper'}
  assert {e.name for e in table2} >= {'iwae_k50_50_continue_from_vae_k1_50_paper',
                                     'vae_k1_50_continue_from_iwae_k50_50_paper'}
  with pytest.raises(config.ConfigError, match='unknown experiment set'):
    experiments.select(['table3'])
  with pytest.raises(config.ConfigError, match='--data'):
    experiments.select(['table1-omniglot'])
  omniglot = experiments.select(['table1-omniglot'], data='/x/chardata.mat')
  assert all(e.config().data.path == '/x/chardata.mat' for e in omniglot)


def tiny(objective, epochs=2, export=True):
  return experiments.Experiment(
      (('latents', '3'), ('hidden', '8'), ('objective', objective), ('k', 2),
       ('schedule', 'poster'), ('epochs', epochs), ('limit_train', 60),
       ('steps_per_execution', 3)), k_nll=4, limit_test=20, export=export)


@pytest.fixture
def roots(tmp_path):
  return experiments.Roots(str(tmp_path / 'runs'), str(tmp_path / 'results'),
                           str(tmp_path / 'pretrained'))


def test_a_queue_runs_measures_and_exports_each_milestone_once(roots):
  """Two jobs at once, each pinned; a job whose step fails ends alone; a
  second queue finds everything done and measures nothing again."""
  bad = tiny('iwae', 1)
  bad = dataclasses.replace(bad, flags=bad.flags + (('k', 3), ('data', '/no/such.npz')))
  exps = [bad, tiny('vae'), tiny('iwae', 1, export=False)]
  assert [e.milestones for e in exps] == [(1,), (1, 2), (1,)]
  assert reproduction.dry_run(exps[1:], roots).splitlines()[0].startswith(
      'to do        vae_k2_3_poster')
  lines = []
  failed = reproduction.Queue(exps, roots, jobs=2, say=lines.append, cores=[0, 1]).run()
  assert failed == ['iwae_k3_3_poster']
  assert 'iwae_k3_3_poster: train to epoch 1 failed (exit 1); see' in ' '.join(lines)
  assert 'no such file' in open(os.path.join(roots.runs, 'iwae_k3_3_poster.log')).read()
  assert not os.path.exists(exps[0].run_dir(roots))
  assert 'vae_k2_3_poster: train to epoch 2 (core 1)' in lines
  assert 'iwae_k2_3_poster: train to epoch 1 (core 0)' in lines
  stamps = {}
  for e in exps[1:]:
    for epoch in e.milestones:
      path = e.result_path(epoch, roots)
      assert json.load(open(path))['epoch'] == epoch
      stamps[path] = os.path.getmtime(path)
    assert reproduction.state(e, roots) == 'done'
  assert rundir.read_config(os.path.join(roots.pretrained, 'vae_k2_3_poster')).model.latents == (3,)
  assert not os.path.exists(os.path.join(roots.pretrained, 'iwae_k2_3_poster'))
  assert all(l.startswith('done') for l in reproduction.dry_run(exps[1:], roots).splitlines())
  assert '| vae_k2_3_poster | done | 2/2 |' in reproduction.status(exps[1:], roots)
  again = []
  assert reproduction.Queue(exps[1:], roots, jobs=2, say=again.append).run() == []
  assert not [l for l in again if 'train' in l or 'measure' in l], again
  assert {p: os.path.getmtime(p) for p in stamps} == stamps


def test_the_cores_are_split_between_the_jobs():
  assert reproduction.slot_cores([0, 1], 1) == [[0, 1]]  # a run alone: every core
  assert reproduction.slot_cores([0, 1], 2) == [[0], [1]]
  assert reproduction.slot_cores([0, 1, 2, 3, 4], 2) == [[0, 1, 2], [3, 4]]
  assert reproduction.slot_cores([4, 6, 7], 3) == [[4], [6], [7]]
  assert reproduction.slot_cores([0, 1], 3) is None  # more jobs than cores: no pinning


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason='needs 2 cores')
@pytest.mark.parametrize('jobs', [1, 2])
def test_a_step_runs_on_its_slots_cores(roots, jobs):
  """The step's process is pinned to its slot's share of the cores before it
  starts (a run alone gets every core), and the queue's line names them."""
  cores = sorted(os.sched_getaffinity(0))[:2]
  queue = reproduction.Queue([], roots, jobs=jobs, cores=cores, say=(lines := []).append)
  os.makedirs(roots.runs)
  step = reproduction.Step('print its cores', [
      'python', '-c', 'import os; print(sorted(os.sched_getaffinity(0)))'])
  job = queue._advance([tiny('vae'), iter([step]), None, None, None], jobs - 1)
  job[2].wait(timeout=60)
  job[4].close()
  want = cores if jobs == 1 else cores[1:]
  assert open(queue._log(job[0])).read().splitlines()[-1] == str(want)
  assert lines == [f'vae_k2_3_poster: print its cores ({"cores" if jobs == 1 else "core"} '
                   f'{",".join(map(str, want))})']


def test_a_run_held_by_another_process_is_left_alone(roots):
  exp = tiny('vae')
  lines = []
  with rundir.locked(exp.run_dir(roots)):
    assert reproduction.Queue([exp], roots, say=lines.append).run() == []
  assert lines == [f'vae_k2_3_poster: trained by another process ({os.getpid()}); left to it']
  assert reproduction.state(exp, roots) == 'to do'


def test_stopping_the_queue_ends_a_paused_step_by_sigterm(roots, tmp_path):
  """A step paused by hand (SIGSTOP) still ends by its SIGTERM handler, at
  once, rather than by SIGKILL after the queue's wait."""
  child = subprocess.Popen(
      [sys.executable, '-c', 'import signal, sys, time\n'
       'signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))\n'
       'print("ready", flush=True)\ntime.sleep(300)'],
      stdout=subprocess.PIPE, text=True, start_new_session=True)
  assert child.stdout.readline() == 'ready\n'
  os.kill(child.pid, signal.SIGSTOP)
  log = open(tmp_path / 'step.log', 'w')
  start = time.time()
  with pytest.raises(reproduction.Stopped, match='SIGTERM: stopped vae_k2_3_poster'):
    reproduction.Queue([], roots)._stop([[tiny('vae'), None, child, None, log]], signal.SIGTERM)
  assert child.returncode == 143 and time.time() - start < 30
  assert log.closed


def test_seconds_per_epoch_skips_a_pause(tmp_path):
  folder = tmp_path / 'run' / 'checkpoints'
  folder.mkdir(parents=True)
  assert reproduction.seconds_per_epoch(str(tmp_path / 'run')) is None
  for epoch, stamp in [(5, 1000.0), (6, 1012.0), (8, 5000.0)]:  # paused after epoch 6
    (folder / f'ckpt-{epoch}.index').write_text('')
    os.utime(folder / f'ckpt-{epoch}.index', (stamp, stamp))
  assert reproduction.seconds_per_epoch(str(tmp_path / 'run')) == 12.0
  os.remove(folder / 'ckpt-5.index')
  assert reproduction.seconds_per_epoch(str(tmp_path / 'run')) == 1994.0
  os.remove(folder / 'ckpt-6.index')
  assert reproduction.seconds_per_epoch(str(tmp_path / 'run')) is None


def test_each_measurement_redraws_the_figures_of_the_results(roots, tmp_path, monkeypatch):
  """The learning curve is redrawn from the results, read once for the
  figures and the tables; another figure's measurements are kept; an
  unreadable measurements file stops the figures, never the queue, and is
  left as it was."""
  results_dir = tmp_path / 'results'
  results_dir.mkdir()
  ll = np.random.default_rng(0).normal(-90, 20, 10000)
  for epoch in (1, 4):
    write_result(results_dir, 'vae_k1_50_paper', 'vae', 1, ll + epoch, epoch,
                 config={'optim': {'schedule': 'paper'}})
  figs = tmp_path / 'figures'
  figs.mkdir()
  (figs / 'measurements.json').write_text('{"samples": {"models": 1}}')
  reads = []
  read_results = reproduction.results.read_results
  monkeypatch.setattr(reproduction.results, 'read_results',
                      lambda root: reads.append(root) or read_results(root))
  doc = tmp_path / 'doc.md'
  doc.write_text(f'{tables.CURVE_BEGIN}\n{tables.CURVE_END}\n')
  lines = []
  reproduction.Queue([], roots, documents=[str(doc)], say=lines.append,
                     figures_dir=str(figs))._tables()
  assert lines == [f'figures redrawn in {figs}: learning_curve'], lines
  assert len(reads) == 1, reads
  assert '| VAE k = 1: test NLL |' in doc.read_text()
  kept = json.loads((figs / 'measurements.json').read_text())
  assert kept['samples'] == {'models': 1}
  assert kept['learning_curve']['VAE k=1'] == {
      str(e): pytest.approx(-(ll + e).mean(), abs=1e-3) for e in (1, 4)}
  assert sorted(os.listdir(figs)) == ['learning_curve.png', 'measurements.json']
  (figs / 'measurements.json').write_text('{"samples": ')
  lines.clear()
  reproduction.Queue([], roots, say=lines.append, figures_dir=str(figs))._tables()
  assert len(lines) == 1 and lines[0].startswith('figures not redrawn (') and 'unreadable' in lines[0]
  assert (figs / 'measurements.json').read_text() == '{"samples": '


def test_a_figure_that_fails_in_any_way_leaves_the_queue_running(roots, tmp_path, monkeypatch):
  """Whatever the figures raise, the queue says so in one line and goes on."""
  from iwae_tf import figure_files  # pylint: disable=import-outside-toplevel

  def broken(*args, **kwargs):
    raise AttributeError("'str' object has no attribute 'run'")

  monkeypatch.setattr(figure_files, 'redraw_from_results', broken)
  lines = []
  reproduction.Queue([], roots, say=lines.append, figures_dir=str(tmp_path / 'f'))._tables()
  assert lines == ["figures not redrawn (AttributeError: 'str' object has no attribute "
                   "'run'); python plots/regenerate.py redraws them"], lines


def test_the_queue_loads_its_reporting_code_when_it_starts(roots, tmp_path, monkeypatch):
  """The modules that write the tables and figures are imported when the
  queue starts, not at its first measurement hours later, so that a checkout
  changed meanwhile cannot mix old and new code in one queue."""
  for name in ('iwae_tf.tables', 'iwae_tf.figure_files', 'iwae_tf.figures'):
    monkeypatch.delitem(sys.modules, name, raising=False)
  reproduction.Queue([], roots, documents=[str(tmp_path / 'doc.md')], say=lambda line: None,
                     figures_dir=str(tmp_path / 'f')).run()
  assert {'iwae_tf.tables', 'iwae_tf.figure_files', 'iwae_tf.figures'} <= set(sys.modules)


def _queue(roots, *extra):
  return subprocess.Popen(
      [sys.executable, os.path.join(ROOT, 'reproduce.py'), 'smoke', '--jobs=2', '--documents=', '--figures_dir=',
       f'--runs_root={roots.runs}', f'--results_root={roots.results}',
       f'--pretrained_root={roots.pretrained}', *extra],
      cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'))


def test_a_killed_queue_resumes_and_measures_each_milestone_once(roots, tmp_path):
  """SIGTERM mid-run: one line, exit 143, the runs keep their checkpoints
  and the packs (``--keep_packed``) of the unfinished ones are at them; a
  second queue meanwhile is refused; on a new machine (the runs gone) the
  rerun unpacks the packs and finishes every job without measuring again
  what was measured."""
  smoke = experiments.SETS['smoke']
  first = smoke[0].result_path(1, roots)
  lock = os.path.join(roots.runs, '.queue.lock')
  inflight = str(tmp_path / 'inflight')
  keep = [f'--keep_packed={inflight}', '--pack_every=0']
  p = _queue(roots, *keep)
  deadline = time.time() + 300
  # The second queue while the first holds its lock (its process id written)
  # and before the first result, so that the signal below comes mid-run:
  # the second one's start-up would leave the runs time to end.
  while time.time() < deadline and p.poll() is None and not (
      os.path.exists(lock) and open(lock).read().strip()):
    time.sleep(0.1)
  other = _queue(roots)
  out, err = other.communicate(timeout=120)
  assert other.returncode == 1 and 'another reproduce.py' in err, err
  while time.time() < deadline and p.poll() is None and not os.path.exists(first):
    time.sleep(0.1)
  assert p.poll() is None, p.communicate()
  stamp = os.path.getmtime(first)
  p.send_signal(signal.SIGTERM)
  out, err = p.communicate(timeout=120)
  assert p.returncode == 143, err
  assert [l for l in err.splitlines() if l.startswith('stopped:')] == [err.strip()]
  assert 'rerun the same command to resume' in err
  # A run may have ended before the signal: its pack is removed, not kept.
  done = [e for e in smoke if reproduction.state(e, roots) == 'done']
  packed = [e for e in smoke if rundir.saved_checkpoints(e.run_dir(roots)) and e not in done]
  assert packed, 'no unfinished run had a checkpoint when stopped'
  for e in packed:
    assert packing.packed_epoch(os.path.join(inflight, e.name)) == rundir.newest_epoch(
        e.run_dir(roots)), e.name
  for e in done:
    assert not os.path.exists(os.path.join(inflight, e.name)), e.name
  shutil.rmtree(roots.runs)
  p = _queue(roots, f'--unpack={inflight}', *keep)
  out, err = p.communicate(timeout=600)
  assert p.returncode == 0, err
  assert 'every job is done' in out
  assert all(f'{e.name}: unpacked' in out for e in packed), out
  assert os.listdir(inflight) == []  # the packs of the runs done are removed
  assert os.path.getmtime(first) == stamp
  measured = [l for l in out.splitlines() if 'vae_k2_3_poster: measure epoch 1' in l]
  assert not measured, out
  for e in smoke:
    assert reproduction.state(e, roots) == 'done'
    assert all(os.path.exists(e.result_path(m, roots)) for m in e.milestones)

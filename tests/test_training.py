"""End-to-end training runs on tiny data in temporary directories."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from iwae_tf import checkpoints
from iwae_tf import config
from iwae_tf import logs
from iwae_tf import paper
from iwae_tf import rundir
from iwae_tf import training
from helpers import ROOT, tiny_config, weights


@pytest.mark.parametrize('latents,objective,k,estimator,groups', [
    ((50,), 'iwae', 5, 'iwae', 1), ((50,), 'vae', 5, 'iwae', 1), ((100, 50), 'iwae', 3, 'iwae', 1),
    ((100, 50), 'vae', 1, 'iwae', 1), ((2,), 'iwae', 50, 'iwae', 1), ((50,), 'iwae', 5, 'dreg', 1),
    ((100, 50), 'iwae', 2, 'piwae', 2)])
def test_a_few_steps_train_and_improve(tmp_path, latents, objective, k, estimator, groups):
  cfg = tiny_config(tmp_path / 'run', latents=latents, objective=objective, k=k, epochs=2)
  cfg = config.TrainConfig(**{
      **cfg.__dict__,
      'model': config.ModelConfig(latents=latents, hidden=paper.hidden_sizes(latents)),
      'objective': config.ObjectiveConfig(objective, k, estimator, groups)})
  model = training.train(cfg)
  before = training.build_model(cfg)  # fresh initialisation, same seed
  assert any(not np.allclose(a, b) for a, b in zip(weights(model), weights(before)))
  assert all(np.all(np.isfinite(w)) for w in weights(model))
  assert sorted(os.listdir(tmp_path / 'run')) == [
      'checkpoints', 'config.json', 'environment.json', 'lock', 'tensorboard']


def test_tensorboard_logs(tmp_path):
  training.train(tiny_config(tmp_path / 'run', epochs=2))
  s = logs.read_scalars(str(tmp_path / 'run' / 'tensorboard'))
  for key in ('train/loss_per_step', 'train/epoch_loss', 'train/learning_rate',
              'train/L_2', 'train/active_units/h1', 'validation/L_2'):
    assert key in s, sorted(s)
  assert [step for step, _ in s['train/learning_rate']] == [1, 2]
  np.testing.assert_allclose([v for _, v in s['train/learning_rate']],
                             [1e-3, 1e-3 * 10**(-1 / 7)], rtol=1e-6)
  assert [step for step, _ in s['train/loss_per_step']] == [2, 4, 6, 8]  # 4 steps/epoch, 2 a call
  assert all(v < 0 for _, v in s['validation/L_2'])


def test_interrupted_run_resumes_exactly(tmp_path):
  straight = training.train(tiny_config(tmp_path / 'a', epochs=3))
  training.train(tiny_config(tmp_path / 'b', epochs=1))
  resumed = training.train(tiny_config(tmp_path / 'b', epochs=3))
  for u, v in zip(weights(straight), weights(resumed)):
    np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-7)
  assert checkpoints.checkpoint_manager(
      checkpoints.make_checkpoint(resumed.model)[0], str(tmp_path / 'b')).latest_checkpoint.endswith('-3')


def test_training_images_stay_out_of_checkpoints(tmp_path):
  model = training.train(tiny_config(tmp_path / 'run'))
  assert model._train_images is not None and model._train_images.shape == (80, 784)
  ckpt = tf.train.latest_checkpoint(str(tmp_path / 'run' / 'checkpoints'))
  names = [name for name, _ in tf.train.list_variables(ckpt)]
  assert not any('train_images' in n for n in names)
  assert all(np.prod(shape) < 80 * 784 for _, shape in tf.train.list_variables(ckpt))


def test_different_experiment_is_refused_and_nothing_is_touched(tmp_path):
  training.train(tiny_config(tmp_path / 'run'))
  before = {f: os.path.getmtime(os.path.join(tmp_path / 'run', f)) for f in ('config.json',)}
  ckpts = sorted(os.listdir(tmp_path / 'run' / 'checkpoints'))
  with pytest.raises(rundir.RunDirError, match='different experiment .*model: '):
    training.train(tiny_config(tmp_path / 'run', latents=(4,)))
  with pytest.raises(rundir.RunDirError, match='objective'):
    training.train(tiny_config(tmp_path / 'run', k=3))
  assert os.path.getmtime(tmp_path / 'run' / 'config.json') == before['config.json']
  assert sorted(os.listdir(tmp_path / 'run' / 'checkpoints')) == ckpts


def test_steps_per_execution_divides_the_epoch_under_a_strategy():
  assert training.steps_per_execution(3000, 50) == 50
  assert training.steps_per_execution(3, 2) == 1
  assert training.steps_per_execution(12, 5) == 4
  assert training.steps_per_execution(4, 100) == 4


def test_last_call_of_an_epoch_runs_the_steps_left_over(tmp_path):
  """5 steps an epoch (a prime) at 2 steps a call: calls of 2, 2 and 1 steps,
  the same training as one step a call, and per-step losses logged at the
  calls' ends."""
  def run(name, steps_per_execution):
    cfg = tiny_config(tmp_path / name, epochs=2)
    cfg = config.TrainConfig(**{**cfg.__dict__, 'data': config.DataConfig(limit_train=100),
                                'steps_per_execution': steps_per_execution})
    return training.train(cfg)

  stacked, single = run('stacked', 2), run('single', 1)
  assert int(stacked.optimizer.iterations.numpy()) == 10  # no overshoot into the next epoch
  for a, b in zip(weights(stacked), weights(single)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  s = logs.read_scalars(str(tmp_path / 'stacked' / 'tensorboard'))
  assert [step for step, _ in s['train/loss_per_step']] == [2, 4, 5, 7, 9, 10]
  # The per-call means recombine into each epoch's mean loss.
  per_call = np.array([v for _, v in s['train/loss_per_step']])
  sizes = np.array([2, 2, 1, 2, 2, 1])
  epoch_means = [np.dot(per_call[i:i + 3], sizes[i:i + 3]) / 5 for i in (0, 3)]
  np.testing.assert_allclose(epoch_means, [v for _, v in s['train/epoch_loss']], rtol=1e-5)


def test_learning_rate_schedule():
  lrs = [paper.learning_rate(e) for e in range(paper.PAPER_EPOCHS + 5)]
  assert paper.PAPER_EPOCHS == 3280
  assert lrs[0] == 1e-3
  assert lrs[1] == lrs[3] == pytest.approx(1e-3 * 10**(-1 / 7))
  assert lrs[4] == lrs[12] == pytest.approx(1e-3 * 10**(-2 / 7))
  assert lrs[13] == pytest.approx(1e-3 * 10**(-3 / 7))
  assert lrs[1093] == lrs[3279] == pytest.approx(1e-4)
  assert len(set(lrs)) == 8


def _cli(args, **kw):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
  return subprocess.Popen([sys.executable, os.path.join(ROOT, 'train.py')] + args, cwd=ROOT,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_cli_bad_input_is_one_line_and_nonzero(tmp_path):
  cases = [(['--data', str(tmp_path / 'missing.npz')], 'no such file'),
           (['--latents', '5,x'], 'comma-separated'),
           (['--k', '0'], 'k must be >= 1'),
           (['--epochs', '-3'], 'epochs must be >= 1'),
           (['--beta1', '1.5'], 'beta1 must be in [0, 1)')]
  # Started together: each is mostly TensorFlow's start-up.
  procs = [_cli(args + ['--run_dir', str(tmp_path / f'r{i}')])
           for i, (args, _) in enumerate(cases)]
  for p, (_, expect) in zip(procs, cases):
    out, err = p.communicate(timeout=300)
    assert p.returncode != 0
    lines = [l for l in err.strip().splitlines() if l.startswith('error:')]
    assert len(lines) == 1 and expect in lines[0], err


def test_cli_killed_run_resumes(tmp_path):
  """SIGKILL a real training process mid-run; the rerun finishes the schedule."""
  run = tmp_path / 'run'
  args = ['--latents=3', '--hidden=16', '--k=2', '--schedule=poster', '--epochs=40',
          '--limit_train=200', '--steps_per_execution=5', '--verbose=0', f'--run_dir={run}']
  p = _cli(args)
  index = run / 'checkpoints' / 'checkpoint'
  deadline = time.time() + 240
  while time.time() < deadline and p.poll() is None:
    if index.exists() and 'ckpt-3' in index.read_text():
      break
    time.sleep(0.05)
  assert p.poll() is None, p.communicate()
  p.send_signal(signal.SIGKILL)
  p.wait()
  p = _cli(args)
  out, err = p.communicate(timeout=600)
  assert p.returncode == 0, err
  assert 'resuming at epoch' in out
  state = (run / 'checkpoints' / 'checkpoint').read_text()
  assert 'ckpt-40' in state
  env = json.loads((run / 'environment.json').read_text())
  assert len(env['invocations']) == 2 and env['data_sha256']


@pytest.mark.parametrize('field,value,message', [
    ('learning_rate', 0.0, 'learning_rate must be > 0'), ('beta2', 1.0, 'beta2 must be in'),
    ('epsilon', -1e-4, 'adam_epsilon must be > 0')])
def test_optimiser_settings_are_range_checked(field, value, message):
  with pytest.raises(config.ConfigError, match=message):
    config.OptimConfig(**{field: value})


@pytest.mark.parametrize('make,message', [
    (lambda: config.TrainConfig(epochs=0), 'epochs must be >= 1'),
    (lambda: config.TrainConfig(steps_per_execution=0), 'steps_per_execution'),
    (lambda: config.TrainConfig(verbose=3), 'verbose must be'),
    (lambda: config.TrainConfig(seed=-1), 'seed must be >= 0'),
    (lambda: config.DataConfig(validation_size=-5), 'validation_size must be >= 0'),
    (lambda: config.DataConfig(dataset='cifar'), 'unknown dataset'),
    (lambda: config.DataConfig(binarization='sometimes'), 'binarization must be')])
def test_run_settings_are_range_checked(make, message):
  with pytest.raises(config.ConfigError, match=message):
    make()


def test_progress_counts_optimisation_steps(tmp_path, capsys):
  """5 steps an epoch in calls of 2: the progress line counts 5 steps, not 3 calls."""
  cfg = tiny_config(tmp_path / 'run', epochs=1)
  cfg = config.TrainConfig(**{**cfg.__dict__, 'data': config.DataConfig(limit_train=100),
                              'verbose': 2})
  training.train(cfg)
  out = capsys.readouterr().out
  assert 'epoch 1/1: 5 steps in' in out and 'ms/step' in out


def test_a_run_directory_is_locked_while_it_trains(tmp_path):
  """A second process on a locked run directory stops at once, naming the
  holder; the lock dies with its holder, however it dies."""
  run = str(tmp_path / 'run')
  second = [sys.executable, '-c', 'import sys; from iwae_tf import rundir\n'
            'try:\n  with rundir.locked(sys.argv[1]): print("got it")\n'
            'except rundir.RunDirError as e: sys.exit(f"error: {e}")', run]
  with rundir.locked(run):
    assert rundir.lock_holder(run) == str(os.getpid())
    p = subprocess.run(second, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 1 and f'in use by another process (process id {os.getpid()})' in p.stderr
    with pytest.raises(rundir.RunDirError, match='in use'):
      training.train(tiny_config(run))
  assert rundir.lock_holder(run) is None
  holder = subprocess.Popen([sys.executable, '-c', 'import sys, time; from iwae_tf import rundir\n'
                             'with rundir.locked(sys.argv[1]):\n  print("held", flush=True)\n'
                             '  time.sleep(600)', run], cwd=ROOT, stdout=subprocess.PIPE, text=True)
  assert holder.stdout.readline().strip() == 'held'
  assert rundir.lock_holder(run) == str(holder.pid)
  holder.kill()
  holder.wait()
  assert rundir.lock_holder(run) is None
  p = subprocess.run(second, cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert p.returncode == 0 and 'got it' in p.stdout, p.stderr


def test_a_new_machine_prints_only_our_lines(tmp_path):
  """With no matplotlib font cache yet (a new machine), train.py writes its own
  progress lines and nothing else: no start-up or font-cache log."""
  env = dict(os.environ, MPLCONFIGDIR=str(tmp_path / 'mpl'))
  env.pop('TF_CPP_MIN_LOG_LEVEL', None)
  p = subprocess.run([sys.executable, os.path.join(ROOT, 'train.py'), '--latents=3', '--hidden=8',
                      '--k=2', '--schedule=poster', '--epochs=1', '--limit_train=40',
                      '--verbose=2', f'--run_dir={tmp_path / "run"}'],
                     cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert p.returncode == 0, p.stderr
  assert os.listdir(tmp_path / 'mpl'), 'matplotlib did not build its cache: the test saw nothing'
  assert p.stderr == ''
  assert [l.split(':')[0] for l in p.stdout.splitlines()] == ['epoch 1/1', 'done']

"""Faults from outside the program: signals, a full disk, an unwritable run
directory, a second process (test_training), on tiny runs."""

import errno
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from iwae_tf import callbacks
from iwae_tf import checkpoints
from iwae_tf import cli
from iwae_tf import evaluation
from iwae_tf import logs
from iwae_tf import metrics
from iwae_tf import results as results_lib
from iwae_tf import rundir
from iwae_tf import tables as tables_lib
from iwae_tf import training
from helpers import ROOT, tiny_config, write_result


ARGS = ['--latents=3', '--hidden=16', '--k=2', '--schedule=poster', '--epochs=30',
        '--limit_train=200', '--steps_per_execution=2', '--verbose=0']


def _train(run, extra=()):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
  return subprocess.Popen([sys.executable, os.path.join(ROOT, 'train.py'), *ARGS, *extra,
                           f'--run_dir={run}'], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


def _train_with_fault(fault, run, epochs, status=1):
  """train.py in a process whose ``fault`` (Python source) replaced a function
  first; returns its stderr lines after checking its exit ``status``."""
  code = (f'import sys, runpy\n{fault}\n'
          f'sys.argv = ["train.py", *{ARGS!r}, "--epochs={epochs}", "--run_dir={run}"]\n'
          f'runpy.run_path({os.path.join(ROOT, "train.py")!r}, run_name="__main__")\n')
  p = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True,
                     timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'))
  assert p.returncode == status, p.stderr
  return p.stderr.strip().splitlines()


def _wait_for_epoch(p, run, epoch, timeout=300):
  index = run / 'checkpoints' / 'checkpoint'
  deadline = time.time() + timeout
  while time.time() < deadline and p.poll() is None:
    if index.exists() and f'ckpt-{epoch}"' in index.read_text():
      return
    time.sleep(0.02)
  raise AssertionError(p.communicate())


@pytest.mark.parametrize('sig,status,name', [(signal.SIGTERM, 143, 'SIGTERM'),
                                             (signal.SIGINT, 130, 'Ctrl-C')])
def test_a_signal_mid_epoch_is_one_line_and_the_rerun_logs_every_epoch_once(
    tmp_path, sig, status, name):
  run = tmp_path / 'run'
  # Epochs of 50 steps: the 27 left outlast a test process that a loaded
  # machine wakes late (of 10 steps, the run once ended before the signal).
  slower = ['--limit_train=1000']
  p = _train(run, slower)
  _wait_for_epoch(p, run, 3)
  time.sleep(0.1)  # into the next epoch
  assert p.poll() is None, 'the run ended before the signal was sent'
  p.send_signal(sig)
  out, err = p.communicate(timeout=120)
  assert p.returncode == status, err
  assert err.strip().splitlines() == [err.strip()], err  # one line, no traceback
  assert err.startswith(f'stopped ({name}): every checkpoint') and 'to resume' in err
  p = _train(run, slower)
  out, err = p.communicate(timeout=600)
  assert p.returncode == 0, err
  s = logs.read_scalars(str(run / 'tensorboard'))
  for tag in ('train/epoch_loss', 'train/loss_per_step', 'train/L_2'):
    steps = [step for step, _ in s[tag]]
    assert steps == sorted(set(steps)), (tag, steps)  # each once, in order
  assert [step for step, _ in s['train/epoch_loss']] == list(range(1, 31))


@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGINT])
def test_a_signal_delivered_to_another_thread_waits_for_the_held_section(sig):
  """A signal sent to the process may land on any of TensorFlow's threads;
  Python then runs its handler in the main thread, whatever the main thread's
  signal mask (which is why masking the main thread did not hold it back)."""
  events, go = [], threading.Event()
  old = signal.signal(sig, lambda signum, frame: events.append('handled'))

  def send():  # from a thread made before the section, as TensorFlow's are
    go.wait()
    os.kill(os.getpid(), sig)

  sender = threading.Thread(target=send)
  sender.start()
  try:
    with cli.signals_held():
      go.set()
      sender.join()
      for _ in range(50):  # bytecodes at which Python would run a pending handler
        time.sleep(0.002)
      events.append('section ended')
    events.append('after')
  finally:
    signal.signal(sig, old)
  assert events == ['section ended', 'handled', 'after']


@pytest.mark.parametrize('sig,stop', [(signal.SIGTERM, cli.Terminated),
                                      (signal.SIGINT, KeyboardInterrupt)])
def test_a_stop_that_a_library_swallows_is_raised_again_after_the_call(sig, stop):
  old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
  try:
    cli.install_stop_handlers()
    callbacks.StopOnSignal().on_train_batch_end(0)  # no signal: nothing happens
    try:  # a library's bare ``except:`` where the handler ran
      os.kill(os.getpid(), sig)
      time.sleep(5)
      raise AssertionError('the handler did not run')
    except stop:
      pass
    with pytest.raises(stop):
      callbacks.StopOnSignal().on_train_batch_end(1)
    cli.install_stop_handlers()  # a new command starts with none
    cli.raise_if_stopped()
  finally:
    for s, handler in old.items():
      signal.signal(s, handler)


def test_a_sigterm_that_a_library_swallows_still_stops_the_run_within_a_call(tmp_path):
  """A SIGTERM whose exception library code catches (here, in the learning
  rate schedule at the start of epoch 4) stops the run at the end of that
  compiled call: exit 143, one line, and epoch 3 stays the latest checkpoint."""
  run = tmp_path / 'run'
  fault = ('import keras, os, signal, time\n'
           'real = keras.callbacks.LearningRateScheduler.on_epoch_begin\n'
           'def swallowing(self, epoch, logs=None):\n'
           '  if epoch == 3:\n'
           '    try:\n'
           '      os.kill(os.getpid(), signal.SIGTERM)\n'
           '      time.sleep(5)\n'
           '    except BaseException:\n'
           '      pass\n'
           '  return real(self, epoch, logs)\n'
           'keras.callbacks.LearningRateScheduler.on_epoch_begin = swallowing\n')
  err = _train_with_fault(fault, run, 8, status=143)
  # (TensorFlow's start-up lines come first here: the fault imports it unfiltered.)
  assert err[-1].startswith('stopped (SIGTERM): '), err
  assert not any('Traceback' in line for line in err), err
  assert rundir.saved_checkpoints(str(run))[0].endswith('ckpt-3')


def test_a_stop_that_a_library_swallows_ends_a_measurement_within_a_batch(tmp_path, monkeypatch):
  """A SIGTERM swallowed during the first batch of ``L_1`` (3 batches) stops
  the measurement after the first batch of the NLL's loop; nothing is written."""
  run = str(tmp_path / 'run')
  training.train(tiny_config(run, epochs=1))
  real = metrics.Estimator.log_likelihood
  batches = []

  def swallowing(self, x, k, seed=0, progress=None):
    def after_batch(done, total):
      batches.append(k)
      if len(batches) == 1:
        try:  # a library's bare ``except:`` where the handler ran
          os.kill(os.getpid(), signal.SIGTERM)
          time.sleep(5)
          raise AssertionError('the handler did not run')
        except cli.Terminated:
          pass
      if progress is not None:
        progress(done, total)
    return real(self, x, k, seed, after_batch)

  monkeypatch.setattr(metrics.Estimator, 'log_likelihood', swallowing)
  old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
  try:
    cli.install_stop_handlers()
    with pytest.raises(cli.Terminated):
      evaluation.evaluate_run(run, k_nll=7, ks=(1,), limit_test=60, batch_size=20,
                              progress=lambda s: None, results_root=str(tmp_path / 'results'))
  finally:
    cli.install_stop_handlers()  # what follows starts with no stop recorded
    for s, handler in old.items():
      signal.signal(s, handler)
  assert batches == [1, 1, 1, 7], batches
  assert not os.path.exists(tmp_path / 'results')


def test_a_full_disk_while_copying_a_milestone(tmp_path, monkeypatch):
  """ENOSPC in the middle of a milestone's copy: the run stops (one line from
  the command line), no temporary file is left, and resuming makes the
  milestone again from the rolling checkpoint."""
  run = tmp_path / 'run'
  real = shutil.copyfile

  def full(src, dst, *a, **kw):
    if 'ckpt-4' in src:
      with open(dst, 'wb') as f:
        f.write(b'partial')
      raise OSError(errno.ENOSPC, 'No space left on device', dst)
    return real(src, dst, *a, **kw)

  monkeypatch.setattr(shutil, 'copyfile', full)
  with pytest.raises(OSError, match='No space left'):
    training.train(tiny_config(run, epochs=6))
  milestones = run / 'checkpoints' / 'milestones'
  assert sorted(os.listdir(milestones)) == ['ckpt-1.data-00000-of-00001', 'ckpt-1.index']
  monkeypatch.setattr(shutil, 'copyfile', real)
  training.train(tiny_config(run, epochs=6))
  assert sorted(f for f in os.listdir(milestones) if f.endswith('.index')) == [
      'ckpt-1.index', 'ckpt-4.index']
  assert not [f for f in os.listdir(milestones) if f.startswith('.tmp')]


def test_a_lost_milestone_is_named_once(tmp_path, capsys):
  run = str(tmp_path / 'run')
  training.train(tiny_config(run, epochs=2))
  os.makedirs(rundir.milestone_dir(run), exist_ok=True)
  for f in os.listdir(rundir.milestone_dir(run)):
    os.remove(os.path.join(rundir.milestone_dir(run), f))
  for f in rundir.checkpoint_files(os.path.join(rundir.checkpoint_dir(run), 'ckpt-1')):
    os.remove(f)
  assert checkpoints.restore_milestones(run, (1, 4), 2) == [1]
  err = capsys.readouterr().err
  assert err.count('milestone epoch(s) 1 ') == 1


def test_an_unwritable_checkpoint_directory_is_found_before_training(tmp_path):
  run = tmp_path / 'run'
  run.mkdir()
  (run / 'checkpoints').write_text('a file where the checkpoints should go')
  with pytest.raises(rundir.RunDirError, match='cannot be written.*nothing was trained'):
    training.train(tiny_config(run, epochs=1))


def test_a_full_disk_from_the_command_line_is_one_line(tmp_path):
  """The same fault through train.py: one line, exit 1, the resume command."""
  lines = _train_with_fault(
      'import errno, shutil\n'
      'def full(src, dst, *a, **k): raise OSError(errno.ENOSPC, "No space left on device", dst)\n'
      'shutil.copyfile = full', tmp_path / 'run', 2)
  assert len(lines) == 1 and lines[0].startswith('error: ') and 'No space left on device' in lines[0]
  assert 'to resume' in lines[0] and 'kept' in lines[0]


def test_a_damaged_results_file_is_named_and_left_out(tmp_path, capsys):
  """A result JSON cut short and a per-image file cut short: the tables skip
  them with a line naming each; nothing is rewritten."""
  import numpy as np
  ll = np.random.default_rng(0).normal(-90, 20, 10000)
  write_result(tmp_path, 'vae_k5_50_poster', 'vae', 5, ll)
  write_result(tmp_path, 'iwae_k5_50_poster', 'iwae', 5, ll + 1)
  good = (tmp_path / 'iwae_k5_50_poster' / 'eval-70.json').read_text()
  (tmp_path / 'iwae_k5_50_poster' / 'eval-71.json').write_text(good[:len(good) // 2])
  npz = tmp_path / 'vae_k5_50_poster' / 'eval-70.npz'
  npz.write_bytes(npz.read_bytes()[:100])
  results = list(results_lib.read_results(str(tmp_path)))
  assert sorted(r.run for r in results) == ['iwae_k5_50_poster', 'vae_k5_50_poster']
  markdown = tables_lib.table(results_lib.newest(results))
  err = capsys.readouterr().err.splitlines()
  assert any('eval-71.json: unreadable result (JSONDecodeError' in l for l in err), err
  assert any('eval-70.npz: unreadable per-image values' in l for l in err), err
  assert 'Paired differences' not in markdown  # the pair lost its per-image values
  assert (tmp_path / 'iwae_k5_50_poster' / 'eval-71.json').read_text() == good[:len(good) // 2]


def test_an_impossible_k_is_refused_with_the_largest_that_fits(tmp_path):
  from iwae_tf import config, memory
  paper = config.ModelConfig()
  assert memory.bytes_per_path(paper) == 4 * 2568
  # The 206 GiB XLA asked for k = 1e6 at batch 20, within a tenth.
  assert abs(2e7 * memory.bytes_per_path(paper) / 2**30 - 206) < 21
  with pytest.raises(memory.MemoryEstimateError, match=r'--k=1000000 at --batch_size=20 needs '
                     r'about 191.3 GiB .* 24.0 GiB .* largest --k that fits is about 125,'):
    memory.check_fits(20_000_000, paper, '--k=1000000 at --batch_size=20', ('k', 20),
                      available=24 * 2**30)
  memory.check_fits(50 * 20, paper, 'k=50', ('k', 20), available=24 * 2**30)  # fits
  p = subprocess.run([sys.executable, os.path.join(ROOT, 'train.py'), '--k=1000000',
                      f'--run_dir={tmp_path / "run"}'], cwd=ROOT, capture_output=True, text=True,
                     timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'))
  assert p.returncode == 1
  lines = p.stderr.strip().splitlines()
  assert len(lines) == 1 and 'largest --k that fits' in lines[0], p.stderr
  assert not (tmp_path / 'run').exists()  # refused before anything was made


def test_a_damaged_measurements_file_stops_the_figure_script_in_one_line(tmp_path):
  (tmp_path / 'measurements.json').write_text('{"nll_vs_k": ')
  p = subprocess.run([sys.executable, os.path.join(ROOT, 'plots', 'regenerate.py'),
                      '--figures=nll_vs_k', f'--out_dir={tmp_path}'], cwd=ROOT,
                     capture_output=True, text=True, timeout=300,
                     env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'))
  assert p.returncode == 1
  assert p.stderr.strip().splitlines() == [l for l in p.stderr.strip().splitlines()
                                           if l.startswith('error: ')] != []
  assert 'measurements.json: unreadable' in p.stderr
  assert sorted(os.listdir(tmp_path)) == ['measurements.json']  # nothing drawn, nothing changed
  assert (tmp_path / 'measurements.json').read_text() == '{"nll_vs_k": '


def test_a_refused_command_leaves_no_run_directory_and_the_corrected_one_runs(tmp_path):
  run = tmp_path / 'run'
  cfg = tiny_config(run, epochs=1)
  bad = type(cfg)(**{**cfg.__dict__, 'init_from': str(tmp_path / 'nonexistent')})
  with pytest.raises(rundir.RunDirError, match='not a run directory'):
    training.train(bad)
  assert not run.exists()
  training.train(cfg)  # the corrected command is not refused
  assert rundir.saved_checkpoints(str(run))


def test_a_full_disk_while_saving_a_checkpoint_is_one_line_and_logged_once(tmp_path):
  """TensorFlow's ResourceExhaustedError from a checkpoint's save in epoch 3:
  one line, exit 1; the rerun finishes with every epoch in TensorBoard once."""
  run = tmp_path / 'run'
  lines = _train_with_fault(
      'from iwae_tf import cli\n'
      'with cli.filtered_stderr():\n  import tensorflow as tf\n'
      'real = tf.train.CheckpointManager.save\n'
      'def save(self, checkpoint_number=None, **kw):\n'
      '  if checkpoint_number == 3:\n'
      '    raise tf.errors.ResourceExhaustedError(None, None, "ckpt-3.data: No space left on device")\n'
      '  return real(self, checkpoint_number=checkpoint_number, **kw)\n'
      'tf.train.CheckpointManager.save = save', run, 5)
  assert len(lines) == 1 and 'No space left on device' in lines[0] and 'to resume' in lines[0]
  p = _train(run, ['--epochs=5'])
  out, err = p.communicate(timeout=300)
  assert p.returncode == 0, err
  s = logs.read_scalars(str(run / 'tensorboard'))
  assert [step for step, _ in s['train/epoch_loss']] == [1, 2, 3, 4, 5]


def test_xla_gets_512_bit_vectors_only_on_avx512_and_never_over_the_users_choice(
    tmp_path, monkeypatch):
  from iwae_tf import cli  # pylint: disable=import-outside-toplevel
  avx512 = tmp_path / 'avx512'
  avx512.write_text('processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw\n')
  avx2 = tmp_path / 'avx2'
  avx2.write_text('processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n')
  monkeypatch.setenv('XLA_FLAGS', '--xla_dump_to=/x')
  assert cli.configure_xla(str(avx512))
  assert os.environ['XLA_FLAGS'] == f'--xla_dump_to=/x {cli.VECTOR_WIDTH_FLAG}'
  assert not cli.configure_xla(str(avx512))  # once only
  monkeypatch.setenv('XLA_FLAGS', '--xla_cpu_prefer_vector_width=256')
  assert not cli.configure_xla(str(avx512))
  assert os.environ['XLA_FLAGS'] == '--xla_cpu_prefer_vector_width=256'
  monkeypatch.delenv('XLA_FLAGS')
  assert not cli.configure_xla(str(avx2)) and 'XLA_FLAGS' not in os.environ
  assert not cli.configure_xla(str(tmp_path / 'none'))

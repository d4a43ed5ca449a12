"""The reproduction queue: runs named experiments to the end, measuring as it goes.

Each experiment (``experiments.py``) is a job: a sequence of steps, each one
``train.py`` or ``evaluate.py`` command, decided afresh from the files before
it starts, so that the queue can be killed at any moment and rerun:

1. for each milestone epoch E (``Experiment.milestones``) not yet measured:
   train to E (``train.py --epochs=E``, which resumes where the run stopped),
   measure checkpoint E (``evaluate.py --checkpoint=E``, K = 5000 on the full
   test set), rewrite the generated tables of the documents (README.md,
   docs/REPORT.md) and redraw the figures made from results alone
   (``figure_files.from_results``);
2. export the final weights (``evaluate.py --export``), where asked.

With ``pack_dir``, the queue also keeps a pack of each unfinished run there
(``packing.py``), refreshed every ``pack_every`` seconds and when it is
stopped, so that a machine that goes without warning (a session's end, a
pre-empted job) costs at most that much of each run's training: the packs
are plain files beside the code, carried or committed with it.

What is done is read from ``results/`` and ``pretrained/``, so a finished
run needs no run directory. ``train.py`` holds its run directory's lock while
it trains (``rundir.locked``); a job whose run another process holds is left
alone (and said so), and only one queue runs on a runs root at a time.

At most ``jobs`` jobs run at once. When there are no more jobs than cores,
the cores are split between them, each job pinned to its own share
(``slot_cores``): two runs pinned one to a core share a small machine better
than two left to share both, and a run alone is fastest on every core
(``bench/bench_parallel_runs.py``). Every step's output goes to
``RUNS/<name>.log``.
"""

import dataclasses
import importlib
import os
import signal
import subprocess
import sys
import time

from iwae_tf import errors
from iwae_tf import results
from iwae_tf import rundir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class QueueError(errors.IWAEError):
  """The queue cannot run as asked."""


class Stopped(errors.IWAEError):
  """The queue was stopped by a signal; ``status`` is the exit status."""

  def __init__(self, message, status):
    super().__init__(message)
    self.status = status


def slot_cores(cores, jobs):
  """The cores of each of ``jobs`` job slots: ``cores`` split into that many
  runs of consecutive cores (sizes differing by at most one), or None (no
  pinning) when there are more jobs than cores."""
  cores = list(cores)
  if jobs > len(cores):
    return None
  size, extra = divmod(len(cores), jobs)
  bounds = [i * size + min(i, extra) for i in range(jobs + 1)]
  return [cores[bounds[i]:bounds[i + 1]] for i in range(jobs)]


def _cores_text(cores):
  if len(cores) == 1:
    return f'core {cores[0]}'
  return f'cores {",".join(map(str, cores))}'


# ----------------------------------------------------------------- the files
def measured(exp, roots):
  """The milestone epochs of ``exp`` that have a result file."""
  return [e for e in exp.milestones if os.path.exists(exp.result_path(e, roots))]


def exported(exp, roots):
  return os.path.exists(rundir.config_path(os.path.join(roots.pretrained, exp.name)))


def progress(exp, roots):
  """How far the run has gone: its newest checkpoint, or its newest result
  (a finished run needs no run directory)."""
  return max([rundir.newest_epoch(exp.run_dir(roots))] + measured(exp, roots))


def state(exp, roots):
  """``done`` (its last epoch measured and, where asked, exported), ``in
  progress`` (a run directory with checkpoints, or some results) or ``to do``."""
  if (os.path.exists(exp.result_path(exp.epochs, roots))
      and (not exp.export or exported(exp, roots))):
    return 'done'
  if rundir.checkpoint_epochs(exp.run_dir(roots)) or measured(exp, roots):
    return 'in progress'
  return 'to do'


def seconds_per_epoch(run_dir):
  """From the rolling checkpoints' times (the last 3 epochs), or None.

  The quicker of the intervals between them, so that a run paused or
  restarted between two checkpoints is timed by the other interval.
  """
  stamps = sorted((rundir.epoch_of(prefix), os.path.getmtime(prefix + '.index'))
                  for prefix in rundir.checkpoints_in(rundir.checkpoint_dir(run_dir)))
  rates = [(t1 - t0) / (e1 - e0) for (e0, t0), (e1, t1) in zip(stamps, stamps[1:]) if e1 > e0]
  return min(rates, default=None)


def newest_result(exp, roots):
  """``(epoch, test NLL)`` of the newest milestone measured, or None."""
  for epoch in reversed(measured(exp, roots)):
    try:
      return epoch, results.read(exp.result_path(epoch, roots)).nll
    except (OSError, ValueError, KeyError, TypeError):
      continue
  return None


# ------------------------------------------------------------------ the steps
@dataclasses.dataclass
class Step:
  """One command of a job; ``what`` says it in a few words."""
  what: str
  argv: list


def steps(exp, roots, warn):
  """The steps left of ``exp``, each decided when the previous one is done."""
  run_dir = exp.run_dir(roots)
  for epoch in exp.milestones:
    if os.path.exists(exp.result_path(epoch, roots)):
      continue
    if progress(exp, roots) < epoch:
      if exp.source is not None and not experiments_done(exp.source, roots):
        warn(f'{exp.name}: waits for {exp.source.name} to finish (its weights start this run)')
        return
      yield Step(f'train to epoch {epoch}', exp.train_command(roots, epochs=epoch))
    if epoch not in rundir.checkpoint_epochs(run_dir):
      warn(f'{exp.name}: no checkpoint of epoch {epoch} is left to measure (the run went past '
           'it before it was a milestone); that point of its learning curve is missing')
      continue
    yield Step(f'measure epoch {epoch}', exp.evaluate_command(epoch, roots))
    yield Step('tables', None)  # rewritten in the queue's own process
  if exp.export and not exported(exp, roots):
    yield Step('export', exp.export_command(roots))


def experiments_done(exp, roots):
  return state(exp, roots) == 'done'


def _lines(exp, roots):
  """The commands a scheduler runs for ``exp``, joined with ``&&``."""
  cmds = [exp.train_command(roots)] if progress(exp, roots) < exp.epochs else []
  reached = progress(exp, roots)
  cmds += [exp.evaluate_command(e, roots) for e in exp.milestones
           if not os.path.exists(exp.result_path(e, roots))
           and (e > reached or e in rundir.checkpoint_epochs(exp.run_dir(roots)))]
  if exp.export and not exported(exp, roots):
    cmds.append(exp.export_command(roots))
  return ' && '.join(' '.join(c) for c in cmds)


# ---------------------------------------------------------------- the reports
def dry_run(exps, roots):
  """One line per job: its state, name and what is left to run."""
  out = []
  for exp in exps:
    s = state(exp, roots)
    out.append(f'{s:<11}  {exp.name}' + ('' if s == 'done' else f'  {_lines(exp, roots)}'))
  return '\n'.join(out)


def _duration(seconds):
  if seconds is None:
    return '–'
  hours = seconds / 3600
  return f'{hours:.1f} h' if hours >= 1 else f'{seconds / 60:.0f} min'


def status(exps, roots):
  """A table: each job's epoch, seconds per epoch, time left and newest NLL."""
  lines = ['| run | state | epoch | s/epoch | training left | newest NLL | held by |',
           '|---|---|---|---|---|---|---|']
  for exp in exps:
    run_dir = exp.run_dir(roots)
    latest, total = rundir.newest_epoch(run_dir), exp.epochs
    if state(exp, roots) == 'done':
      latest = total
    spe = seconds_per_epoch(run_dir)
    left = None if spe is None else spe * (total - latest)
    newest = newest_result(exp, roots)
    nll = '–' if newest is None else f'{newest[1]:.2f} (epoch {newest[0]})'
    holder = rundir.lock_holder(run_dir) or '–'
    lines.append(f'| {exp.name} | {state(exp, roots)} | {latest}/{total} '
                 f'| {"–" if spe is None else f"{spe:.1f}"} | {_duration(left)} | {nll} '
                 f'| {holder} |')
  return '\n'.join(lines)


# ------------------------------------------------------------------ the queue
def _queue_lock(roots):
  """Holds ``RUNS/.queue.lock`` for the life of the process: one queue at a time."""
  os.makedirs(roots.runs, exist_ok=True)
  try:
    return rundir.hold_lock(os.path.join(roots.runs, '.queue.lock'))
  except BlockingIOError as e:
    raise QueueError(f'{roots.runs}: another reproduce.py (process id {e.holder}) is running '
                     'this queue; it resumes every run itself') from None


class Queue:
  """Runs jobs' steps, at most ``jobs`` at a time (see module docstring).

  Args:
    exps: the experiments, in the order they are started.
    roots: ``experiments.Roots``.
    jobs: how many run at once.
    documents: the documents whose generated tables are rewritten after
      each measurement (``tables_lib.write_tables``).
    figures_dir: where the figures made from results alone are redrawn
      after each measurement (None: not redrawn).
    say: where the queue's own lines go.
    cores: the cores to split between the jobs (default: this process's).
    pack_dir: where the packs of the unfinished runs are kept (None: none).
    pack_every: seconds between two refreshes of the packs.
  """

  def __init__(self, exps, roots, jobs=1, documents=(), say=print, cores=None,
               figures_dir=None, pack_dir=None, pack_every=600):
    if jobs < 1:
      raise QueueError(f'--jobs must be >= 1, got {jobs}')
    if pack_every < 0:
      raise QueueError(f'--pack_every must be >= 0 seconds, got {pack_every}')
    self.exps, self.roots, self.jobs, self.say = list(exps), roots, jobs, say
    self.documents, self.figures_dir = list(documents), figures_dir
    self.pack_dir, self.pack_every, self._packed_at = pack_dir, pack_every, None
    cores = sorted(os.sched_getaffinity(0)) if cores is None else list(cores)
    self.slot_cores = slot_cores(cores, jobs)
    self.failed = []

  def run(self):
    """Runs every job to its end. Returns the names of the jobs that failed."""
    lock = _queue_lock(self.roots)
    self._load_reporting()
    pending = list(self.exps)
    slots = [None] * self.jobs  # (exp, steps iterator, Popen, step, log file) per slot
    stop = {}

    def on_signal(signum, frame):
      stop['signal'] = signum

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
      while True:
        if stop:
          self._stop(slots, stop['signal'])
        for i, slot in enumerate(slots):
          if slot is None:
            slots[i] = self._next_job(pending, i)
          else:
            slots[i] = self._advance(slot, i)
        self._keep_packed()
        if all(s is None for s in slots) and not pending:
          break
        time.sleep(0.2)
    finally:
      for s, handler in old.items():
        signal.signal(s, handler)
      lock.close()
    return self.failed

  def _next_job(self, pending, slot):
    while pending:
      exp = pending.pop(0)
      holder = rundir.lock_holder(exp.run_dir(self.roots))
      if holder:
        self.say(f'{exp.name}: trained by another process ({holder}); left to it')
        continue
      job = [exp, iter(steps(exp, self.roots, self.say)), None, None, None]
      advanced = self._advance(job, slot)
      if advanced is not None:
        return advanced
    return None

  def _advance(self, job, slot):
    """Polls a job's running step; starts its next one. None when the job ended."""
    exp, todo, proc, step, log = job
    if proc is not None:
      code = proc.poll()
      if code is None:
        return job
      log.close()
      if code != 0:
        self.say(f'{exp.name}: {step.what} failed (exit {code}); see {self._log(exp)}')
        self.failed.append(exp.name)
        return None
      self.say(f'{exp.name}: {step.what} done')
    while True:
      step = next(todo, None)
      if step is None:
        if state(exp, self.roots) == 'done':
          self.say(f'{exp.name}: done')
        return None
      if step.argv is not None:
        break
      self._tables()
    log = open(self._log(exp), 'a')
    log.write(f'\n# {time.strftime("%Y-%m-%d %H:%M:%S")} {" ".join(step.argv)}\n')
    log.flush()
    # Pinned before TensorFlow starts: it sizes its thread pools from the
    # cores the process may use.
    cores = None if self.slot_cores is None else self.slot_cores[slot]
    self.say(f'{exp.name}: {step.what}' + ('' if cores is None else f' ({_cores_text(cores)})'))
    proc = subprocess.Popen(
        [sys.executable, *step.argv[1:]], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, start_new_session=True,
        preexec_fn=None if cores is None else (lambda: os.sched_setaffinity(0, set(cores))))
    return [exp, todo, proc, step, log]

  def _log(self, exp):
    return os.path.join(self.roots.runs, f'{exp.name}.log')

  def _load_reporting(self):
    """Imports the modules that ``_tables`` and ``_keep_packed`` use, when
    the queue starts.

    Not at the first measurement (hours later): a checkout changed meanwhile
    would give the queue some modules of the code it started with and others
    of the new code. Not at the top of this module either: they bring
    TensorFlow, which ``--status`` and ``--dry_run`` do without.
    """
    for name, needed in [('tables', self.documents), ('figure_files', self.figures_dir),
                         ('figures', self.figures_dir), ('packing', self.pack_dir)]:
      if needed:
        importlib.import_module(f'iwae_tf.{name}')

  def _tables(self):
    # pylint: disable=import-outside-toplevel
    if not (self.documents or self.figures_dir):
      return
    all_results = list(results.read_results(self.roots.results))
    if self.documents:
      from iwae_tf import tables
      tables.write_tables(all_results, self.documents)
    if self.figures_dir:
      from iwae_tf import figure_files
      try:
        drawn = figure_files.redraw_from_results(all_results, self.figures_dir,
                                                 say=lambda line: None)
      except Exception as e:  # pylint: disable=broad-exception-caught
        # The figures are a by-product: whatever stops them, the runs go on.
        self.say(f'figures not redrawn ({type(e).__name__}: {e}); '
                 'python plots/regenerate.py redraws them')
      else:
        self.say(f'figures redrawn in {self.figures_dir}: {", ".join(drawn) or "none"}')

  def _keep_packed(self, now=False):
    """Packs each run that went on since its pack, every ``pack_every``
    seconds (or ``now``); removes the packs of the runs that are done.

    A run that cannot be packed (a full disk) is said in one line and keeps
    its older pack; the runs go on.
    """
    if self.pack_dir is None:
      return
    if not now and self._packed_at is not None and (
        time.monotonic() - self._packed_at < self.pack_every):
      return
    from iwae_tf import packing  # pylint: disable=import-outside-toplevel
    for exp in self.exps:
      try:
        packing.pack_experiment(exp, self.roots, self.pack_dir, self.say, stale_only=True)
      except Exception as e:  # pylint: disable=broad-exception-caught
        self.say(f'{exp.name}: not packed ({type(e).__name__}: {e}); its older pack is kept')
    self._packed_at = time.monotonic()

  def _stop(self, slots, signum):
    """Ends the running steps (each resumes from its last checkpoint) and stops."""
    running = [s for s in slots if s is not None and s[2] is not None]
    for exp, _, proc, _, _ in running:
      if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        # A step paused by hand (SIGSTOP, Ctrl-Z) would act on SIGTERM only
        # when continued, and be killed after the wait below instead.
        os.killpg(proc.pid, signal.SIGCONT)
    for exp, _, proc, _, log in running:
      try:
        proc.wait(timeout=60)
      except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
      log.close()
    self._keep_packed(now=True)  # each stopped run at its last checkpoint
    name = signal.Signals(signum).name
    stopped = ', '.join(s[0].name for s in running) or 'nothing'
    raise Stopped(f'{name}: stopped {stopped}; every run keeps its last checkpoint and '
                  'results; rerun the same command to resume', 128 + signum)

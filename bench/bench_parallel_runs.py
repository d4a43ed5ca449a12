"""Two training runs on one small machine: each on its own core, or sharing all.

On a machine with few cores, the 3280-epoch runs go faster together than one
after the other only if they do not fight over the cores. This measures, side
by side in one invocation, the training speed (seconds per 1000 steps of
``Trainer.fit``: 1 stochastic layer, 50 latents, batch 20, IWAE with ``--k``)
of worker processes started

* ``solo``: one run, free to use every core (what ``train.py`` does);
* ``solo, 1 core``: one run pinned to core 0 (``os.sched_setaffinity``
  before TensorFlow starts, so its thread pools have one thread);
* ``two pinned``: two runs at once, on cores 0 and 1;
* ``two shared``: two runs at once, both free to use every core;

and prints each run's time and the configuration's throughput (steps per
second, all its runs together) relative to ``solo``. Configurations alternate
for ``--repeats`` rounds, and each worker keeps its best of 3 timings.

Usage: python bench/bench_parallel_runs.py [--k=5] [--steps=1000] [--repeats=2]
Pinning a real run: ``taskset -c 0 python train.py ...`` and
``taskset -c 1 python train.py ...``.
"""

import dataclasses
import itertools
import os
import subprocess
import sys

from absl import app
from absl import flags

flags.DEFINE_integer('k', 5, 'Importance samples of the timed IWAE runs.')
flags.DEFINE_integer('steps', 1000, 'Training steps per timing.')
flags.DEFINE_integer('repeats', 2, 'Rounds over the configurations; the best is kept.')
flags.DEFINE_string('worker_core', None, 'Internal: run one timed worker on this core '
                    '("any": unpinned).')
FLAGS = flags.FLAGS

CONFIGS = {'solo': [None], 'solo, 1 core': [0], 'two pinned': [0, 1], 'two shared': [None, None]}


def worker(k, steps, core):
  """Prints the best of 3 timings of ``steps`` training steps, as its last line."""
  if core is not None:
    os.sched_setaffinity(0, {core})  # before TensorFlow sizes its thread pools
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  # pylint: disable=import-outside-toplevel
  from iwae_tf import cli
  cli.configure_xla()  # as train.py and evaluate.py
  import numpy as np
  import matmuls
  from iwae_tf import datasets as data_lib
  from iwae_tf import experiments
  from iwae_tf import training
  x = np.resize(data_lib.mnist.load().x_train, (steps * 20, 784))
  cfg = dataclasses.replace(experiments.run('iwae', k).config(), verbose=0,
                            steps_per_execution=min(300, steps))
  trainer = training.build_trainer(cfg, training.build_model(cfg, x))
  trainer.compile(optimizer=training.build_optimizer(cfg, trainer), jit_compile=True)
  training.fit_epochs(trainer, x, cfg, 0, 1)  # compile
  epochs = itertools.count(1)

  def one_epoch():
    epoch = next(epochs)
    training.fit_epochs(trainer, x, cfg, epoch, epoch + 1)

  print(matmuls.best_time(one_epoch, 3), flush=True)


def run_config(cores, k, steps):
  """Seconds per ``steps`` steps of each of the workers started together."""
  procs = [subprocess.Popen([sys.executable, os.path.abspath(__file__), f'--k={k}',
                             f'--steps={steps}', f'--worker_core={"any" if c is None else c}'],
                            stdout=subprocess.PIPE, text=True) for c in cores]
  out = [p.communicate()[0] for p in procs]
  if any(p.returncode for p in procs):
    raise SystemExit(f'a worker failed (cores {cores})')
  return [float(o.strip().splitlines()[-1]) for o in out]


def main(argv):
  del argv
  if FLAGS.worker_core is not None:
    worker(FLAGS.k, FLAGS.steps, None if FLAGS.worker_core == 'any' else int(FLAGS.worker_core))
    return
  if len(os.sched_getaffinity(0)) < 2:
    raise SystemExit('needs at least 2 cores')
  best = {}
  for _ in range(FLAGS.repeats):
    for name, cores in CONFIGS.items():
      times = run_config(cores, FLAGS.k, FLAGS.steps)
      if name not in best or sum(times) < sum(best[name]):
        best[name] = times
  solo = FLAGS.steps / best['solo'][0]
  print(f'k = {FLAGS.k}, {FLAGS.steps} steps per timing, {os.cpu_count()} CPUs')
  print(f"{'configuration':<14} {'s per run':>14} {'throughput / solo':>18}")
  for name, times in best.items():
    rate = sum(FLAGS.steps / t for t in times)
    print(f"{name:<14} {' '.join(f'{t:.2f}' for t in times):>14} {rate / solo:>18.2f}")


if __name__ == '__main__':
  app.run(main)

"""XLA's preferred vector width, 256 (its default) against 512 bits
(``cli.configure_xla``, on AVX-512 processors), for training and the K = 5000
estimate.

``XLA_FLAGS`` is read once per process, so each width runs ``bench_train.py``
and ``bench_eval.py`` in processes of its own, the two widths alternating
``--rounds`` times (all pinned to one core, so that they share the machine's
spells of load alike); the best of each is kept. Prints each script's rows
for both widths, and the 512-bit time as a fraction of the 256-bit one.

Usage: python bench/bench_vector_width.py [--ks=1,5,50] [--rounds=2] [--core=0]
"""

import os
import subprocess
import sys

from absl import app
from absl import flags

flags.DEFINE_string('ks', '1,5,50', 'Values of k of bench_train.py.')
flags.DEFINE_integer('rounds', 2, 'Alternations of the two widths.')
flags.DEFINE_integer('repeats', 2, "bench_train.py's repetitions per process.")
flags.DEFINE_integer('core', 0, 'The core every process is pinned to.')
FLAGS = flags.FLAGS

HERE = os.path.dirname(os.path.abspath(__file__))
WIDTHS = (256, 512)


def rows(script, args, width):
  """The numeric rows of a benchmark script run with ``width``: {first
  column: [the other columns as floats]}."""
  env = dict(os.environ, XLA_FLAGS=f'--xla_cpu_prefer_vector_width={width}',
             TF_CPP_MIN_LOG_LEVEL='3')
  out = subprocess.run(['taskset', '-c', str(FLAGS.core), sys.executable,
                        os.path.join(HERE, script), *args], env=env, capture_output=True,
                       text=True, check=True).stdout
  table = {}
  for line in out.splitlines():
    cells = line.split()
    if cells and all(c.replace('.', '', 1).isdigit() for c in cells):
      table[cells[0]] = [float(c) for c in cells[1:]]
  return table


def main(argv):
  del argv
  scripts = {'bench_train.py': [f'--ks={FLAGS.ks}', f'--repeats={FLAGS.repeats}'],
             'bench_eval.py': []}
  # The columns kept (by position in the script's rows), then the ratio of
  # the first two.
  columns = {'bench_train.py': ('k', {'epoch_s': 0, 'matmul_s': 1, 'grads_s': 3}),
             'bench_eval.py': ('K', {'eval_s': 0, 'matmul_s': 1})}
  best = {}
  for _ in range(FLAGS.rounds):
    for width in WIDTHS:
      for script, args in scripts.items():
        for key, values in rows(script, args, width).items():
          old = best.get((script, width, key))
          best[(script, width, key)] = values if old is None else [
              min(a, b) for a, b in zip(old, values)]
  for script, (name, cols) in columns.items():
    print(f'{script}: best of {FLAGS.rounds} processes per width')
    print(f"{name:>6} {'width':>6} " + ' '.join(f'{c:>9}' for c in cols) + '     ratio')
    for key in sorted({k for (s, _, k) in best if s == script}, key=float):
      for width in WIDTHS:
        values = [best[(script, width, key)][i] for i in cols.values()]
        print(f'{key:>6} {width:>6} ' + ' '.join(f'{v:>9.2f}' for v in values)
              + f' {values[0] / values[1]:>9.2f}')
      first = best[(script, 512, key)][0] / best[(script, 256, key)][0]
      print(f'{key:>6} {"512/256":>7} {first:>8.2f}')

if __name__ == '__main__':
  app.run(main)

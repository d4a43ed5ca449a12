"""The machine's own best at the training step's matrix products: is XLA's
matmul loop (the yardstick of bench_train.py) the fastest way to run them?

The same products as one training step (``matmuls.step_products``:
forward and backward, chained as in the network), ``--steps`` times, run by
three backends side by side in one process, alternating, best of
``--repeats``:

* ``xla``: one XLA-compiled loop (``matmuls.matmul_loop``, the yardstick);
* ``tf``: the same loop in a ``tf.function`` without XLA (TensorFlow's own
  kernels, oneDNN on x86);
* ``numpy``: a Python loop of ``numpy.matmul`` (its BLAS), the products alone
  (no additions between them, so slightly less work than the others).

Prints, for each k, each backend's seconds and its time as a fraction of the
fastest's, and the matmul-only loop's achieved GFLOP/s.

Usage: python bench/bench_peak.py [--steps=300] [--ks=1,5,50] [--repeats=3]
"""

import os
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from iwae_tf import cli  # noqa: E402

cli.configure_xla()  # as train.py and evaluate.py

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import matmuls  # noqa: E402  (this folder's own: the script's directory leads sys.path)

flags.DEFINE_integer('steps', 300, 'Training steps whose products are timed.')
flags.DEFINE_string('ks', '1,5,50', 'Values of k.')
flags.DEFINE_integer('repeats', 3, 'Timed repetitions of each backend; the best is kept.')
FLAGS = flags.FLAGS


def flops(chains):
  """Multiply-adds x 2 of one round of ``matmul_loop(chains, 1, backward=True)``."""
  total = 0
  for rows, dims, first_input_grad in chains:
    for l, (i, o) in enumerate(zip(dims[:-1], dims[1:])):
      products = 2 + (1 if (l or first_input_grad) else 0)  # forward, weight grad, input grad
      total += 2 * rows * i * o * products
  return total


def numpy_loop(chains, iterations):
  """The same products with ``numpy.matmul``, as a zero-argument function."""
  rng = np.random.default_rng(0)
  weights = [[rng.normal(0, i**-0.5, (i, o)).astype(np.float32)
              for i, o in zip(dims[:-1], dims[1:])] for _, dims, _ in chains]
  inputs = [rng.normal(size=(rows, dims[0])).astype(np.float32) for rows, dims, _ in chains]
  grads = [rng.normal(size=(rows, dims[-1])).astype(np.float32) for rows, dims, _ in chains]

  def run():
    for _ in range(iterations):
      for (_, _, first_input_grad), ws, x, g in zip(chains, weights, inputs, grads):
        hs = [x]
        for w in ws:
          hs.append(hs[-1] @ w)
        for l in reversed(range(len(ws))):
          hs[l].T @ g  # the weight gradient
          if l or first_input_grad:
            g = g @ ws[l].T
  return run


def main(argv):
  del argv
  ks = [int(k) for k in FLAGS.ks.split(',')]
  print(f'TensorFlow {tf.__version__}, numpy {np.__version__}, {os.cpu_count()} CPUs, '
        f'{FLAGS.steps} steps')
  print(f"{'k':>4} {'xla_s':>8} {'tf_s':>8} {'numpy_s':>8} {'xla/best':>9} {'tf/best':>8} "
        f"{'numpy/best':>11} {'xla_GFLOP/s':>12}")
  for k in ks:
    chains = matmuls.step_products(k)
    xla = matmuls.matmul_loop(chains, FLAGS.steps, backward=True)
    plain = matmuls.matmul_loop(chains, FLAGS.steps, backward=True, jit_compile=False)
    blas = numpy_loop(chains, FLAGS.steps)
    runs = {'xla': lambda: float(xla()), 'tf': lambda: float(plain()), 'numpy': blas}
    for run in runs.values():
      run()  # compile, warm the caches
    best = {name: float('inf') for name in runs}
    for _ in range(FLAGS.repeats):
      for name, run in runs.items():
        start = time.perf_counter()
        run()
        best[name] = min(best[name], time.perf_counter() - start)
    top = min(best.values())
    print(f"{k:>4} {best['xla']:>8.3f} {best['tf']:>8.3f} {best['numpy']:>8.3f} "
          f"{best['xla'] / top:>9.2f} {best['tf'] / top:>8.2f} {best['numpy'] / top:>11.2f} "
          f"{flops(chains) * FLAGS.steps / best['xla'] / 1e9:>12.1f}")


if __name__ == '__main__':
  app.run(main)

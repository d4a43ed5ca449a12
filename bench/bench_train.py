"""Seconds per training epoch versus the same matrix products done alone.

For k = 1, 5, 50 (1 stochastic layer, 50 latents, batch 20, 3000 steps an
epoch as on MNIST) this prints, measured side by side in one run:

* ``epoch_s``: one epoch of ``train.py``'s training (``Trainer.fit`` over the
  real input pipeline, compiled step, dynamic binarisation, Adam);
* ``matmul_s``: all forward and backward matrix products of the same steps
  (encoder on ``[20, .]``, decoder on ``[k*20, .]``, weight and input
  gradients), alone, in one compiled loop;
* their ratio. Targets: <= 2x (core issue), <= 1.5x (speed issue);
* ``grads_s``: the same steps' gradient computations with a plain gradient
  step instead of Adam, in one XLA loop, and its ratio to ``matmul_s``: the
  difference between ``epoch_s`` and ``grads_s`` is Adam's own work (its two
  moments over the 425k parameters, read and written every step) plus Keras.

Usage: python bench/bench_train.py [--steps=3000] [--ks=1,5,50] [--repeats=5]
Epochs, matmul loops and plain-step loops alternate, and the best of ``repeats`` of each is
kept, since the machine is shared.
"""

import dataclasses
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from iwae_tf import cli  # noqa: E402

cli.configure_xla()  # as train.py and evaluate.py

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from iwae_tf import datasets as data_lib  # noqa: E402
from iwae_tf import experiments  # noqa: E402
from iwae_tf import training  # noqa: E402
import matmuls  # noqa: E402  (this folder's own: the script's directory leads sys.path)

flags.DEFINE_integer('steps', 3000, 'Training steps timed (3000 = one MNIST epoch).')
flags.DEFINE_string('ks', '1,5,50', 'Values of k.')
flags.DEFINE_integer('repeats', 5, 'Timed repetitions; the best is kept (the shared machine '
                     'has slow spells of several seconds).')
flags.DEFINE_integer('steps_per_execution', 300, 'As train.py.')
FLAGS = flags.FLAGS

BATCH = matmuls.BATCH


def gradient_loop(trainer, steps):
  """``steps`` steps' gradient computations (gather, binarise, sample, the
  estimator, backward pass) in one XLA loop, with a plain gradient step
  instead of Adam: what the epoch costs beyond this is Adam's own work (its
  moments, read and written every step) and Keras.

  The plain step is tiny (so the model stays put) but real, as in the
  yardstick: with unchanging weights XLA could hoist weight-only work out of
  the loop, and a mere sum of a gradient could turn its product into a
  matrix-vector one.
  """
  idx = tf.reshape(tf.range(steps * BATCH) % trainer._train_images.shape[0], [steps, BATCH])

  @tf.function(jit_compile=True, autograph=False)
  def run():
    def body(i):
      x = tf.gather(trainer._train_images, idx[i])
      _, _, grads, variables = trainer._step(x, trainer.step_seeds())
      for g, v in zip(grads, variables):
        v.assign_sub(1e-9 * g)
      return (i + 1,)
    return tf.while_loop(lambda i: i < steps, body, (0,))[0]

  return run


def main(argv):
  del argv
  ks = [int(k) for k in FLAGS.ks.split(',')]
  mnist = data_lib.mnist.load()
  n = FLAGS.steps * BATCH
  x_train = np.resize(mnist.x_train, (n, mnist.x_train.shape[1]))
  print(f'TensorFlow {tf.__version__}, {os.cpu_count()} CPUs, {FLAGS.steps} steps of batch {BATCH}')
  print(f"{'k':>4} {'epoch_s':>9} {'matmul_s':>9} {'ratio':>6} {'grads_s':>9} {'grads/matmul':>13}")
  for k in ks:
    cfg = dataclasses.replace(experiments.run('iwae', k).config(), verbose=0,
                              steps_per_execution=FLAGS.steps_per_execution)
    trainer = training.build_trainer(cfg, training.build_model(cfg, x_train))
    trainer.compile(optimizer=training.build_optimizer(cfg, trainer), jit_compile=True)
    run = matmuls.matmul_loop(matmuls.step_products(k), FLAGS.steps, backward=True)
    run()  # compile
    training.fit_epochs(trainer, x_train, cfg, 0, 1)  # compile
    grads = gradient_loop(trainer, FLAGS.steps)
    grads()  # compile
    # Interleaved, so that all see the same spells of load on the shared
    # machine; the best of each is kept.
    epoch_times, matmul_times, grad_times = [], [], []
    for epoch in range(1, FLAGS.repeats + 1):
      epoch_times.append(matmuls.best_time(
          lambda: training.fit_epochs(trainer, x_train, cfg, epoch, epoch + 1), 1))
      matmul_times.append(matmuls.best_time(lambda: run().numpy(), 1))
      grad_times.append(matmuls.best_time(lambda: grads().numpy(), 1))
    epoch_s, matmul_s, grads_s = min(epoch_times), min(matmul_times), min(grad_times)
    print(f'{k:>4} {epoch_s:>9.2f} {matmul_s:>9.2f} {epoch_s / matmul_s:>6.2f} '
          f'{grads_s:>9.2f} {grads_s / matmul_s:>13.2f}', flush=True)


if __name__ == '__main__':
  app.run(main)

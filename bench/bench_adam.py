"""Adam's update alone, on the paper's 1-layer model's 14 variables (425k
parameters), as XLA compiles it inside the training loop: where the epoch's
time beyond the plain step goes (bench_train.py's ``grads_s``).

Side by side in one process, each ``--steps`` updates in one XLA loop, best
of ``--repeats``:

* ``keras``: Keras' Adam update per variable (first moment, second moment,
  the weight: ``keras.optimizers.Adam.update_step``'s arithmetic);
* ``flat``: the moments as one flat buffer each, the gradients concatenated
  and the step split back into the variables;
* ``stream``: a yardstick that reads each weight and gradient and writes the
  weight once (3 of the 7 arrays Adam must at least touch).

Usage: python bench/bench_adam.py [--steps=300] [--repeats=5]
Run it under ``XLA_FLAGS=--xla_cpu_prefer_vector_width=256`` and ``=512``
to compare the vector widths (``cli.configure_xla``).
"""

import os
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from iwae_tf import cli  # noqa: E402

cli.configure_xla()  # as train.py

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

flags.DEFINE_integer('steps', 300, 'Updates per timed loop.')
flags.DEFINE_integer('repeats', 5, 'Timed repetitions; the best is kept.')
FLAGS = flags.FLAGS

SHAPES = [(784, 200), (200,), (200, 200), (200,), (200, 50), (50,), (200, 50), (50,),
          (50, 200), (200,), (200, 200), (200,), (200, 784), (784,)]
BETA1, BETA2, EPSILON, LEARNING_RATE = 0.9, 0.999, 1e-4, 1e-3


def loops(steps):
  rng = np.random.default_rng(0)
  params = [tf.Variable(rng.normal(size=s).astype(np.float32)) for s in SHAPES]
  grads = [tf.constant(rng.normal(size=s).astype(np.float32)) for s in SHAPES]
  ms = [tf.Variable(tf.zeros(s)) for s in SHAPES]
  vs = [tf.Variable(tf.zeros(s)) for s in SHAPES]
  n = sum(int(np.prod(s)) for s in SHAPES)
  flat_m, flat_v = tf.Variable(tf.zeros([n])), tf.Variable(tf.zeros([n]))

  def loop(update):
    @tf.function(jit_compile=True, autograph=False)
    def run():
      def body(i):
        t = tf.cast(i + 1, tf.float32)
        alpha = LEARNING_RATE * tf.sqrt(1 - BETA2**t) / (1 - BETA1**t)
        # A new gradient each step, so that nothing is hoisted out of the loop.
        update([g * (1.0 + 1e-6 * t) for g in grads], alpha, t)
        return (i + 1,)
      return tf.while_loop(lambda i: i < steps, body, (0,))[0]
    return run

  def keras_like(gs, alpha, t):
    for p, g, m, v in zip(params, gs, ms, vs):
      m.assign_add((g - m) * (1 - BETA1))
      v.assign_add((g * g - v) * (1 - BETA2))
      p.assign_sub(m * alpha / (tf.sqrt(v) + EPSILON))

  def flat(gs, alpha, t):
    g = tf.concat([tf.reshape(g, [-1]) for g in gs], 0)
    flat_m.assign_add((g - flat_m) * (1 - BETA1))
    flat_v.assign_add((g * g - flat_v) * (1 - BETA2))
    step = flat_m * alpha / (tf.sqrt(flat_v) + EPSILON)
    start = 0
    for p in params:
      size = int(np.prod(p.shape))
      p.assign_sub(tf.reshape(step[start:start + size], p.shape))
      start += size

  def stream(gs, alpha, t):
    for p, g in zip(params, gs):
      p.assign_sub(g * 1e-6)

  return n, {'keras': loop(keras_like), 'flat': loop(flat), 'stream': loop(stream)}


def main(argv):
  del argv
  n, runs = loops(FLAGS.steps)
  for fn in runs.values():
    fn()  # compile
  best = dict.fromkeys(runs, float('inf'))
  for _ in range(FLAGS.repeats):
    for name, fn in runs.items():
      start = time.perf_counter()
      fn().numpy()
      best[name] = min(best[name], time.perf_counter() - start)
  print(f'TensorFlow {tf.__version__}, {n} parameters, {FLAGS.steps} updates, '
        f'XLA_FLAGS={os.environ.get("XLA_FLAGS", "")!r}')
  for name, seconds in best.items():
    print(f'{name:<8} {seconds / FLAGS.steps * 1e3:.3f} ms/update')


if __name__ == '__main__':
  app.run(main)

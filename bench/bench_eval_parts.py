"""Where the K = 5000 estimate's time goes beyond its decoder products.

Builds the estimate's per-sample work up in steps, each one XLA-compiled loop
over ``--rounds`` chunks of ``--rows`` samples (the paper's 1-layer decoder,
50 -> 200 -> 200 -> 784; the weights do not change the cost), side by side in
one process, best of ``--repeats``:

1. the decoder's products with their biases (the yardstick of bench_eval.py);
2. + tanh on both hidden layers;
3. + the Bernoulli log-probability of the image (``layers.BernoulliLogits``:
   one ``exp`` and one ``log1p`` per pixel) summed over the pixels;
4. + the sampling noise (ThreeFry normals, ``layers.noise_alg``), z, log q(z|x)
   and log p(z);

then ``metrics.Estimator`` itself on the same number of samples (which adds
the encoder, once per chunk, and the running log-sum-exp). Prints
nanoseconds per sample and each as a multiple of step 1.

Usage: python bench/bench_eval_parts.py [--rows=1000] [--rounds=600] [--repeats=3]
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

from iwae_tf import datasets as data_lib  # noqa: E402
from iwae_tf import experiments  # noqa: E402
from iwae_tf import metrics  # noqa: E402
from iwae_tf import training  # noqa: E402

flags.DEFINE_integer('rows', 1000, 'Samples per chunk (images x samples per image).')
flags.DEFINE_integer('rounds', 600, 'Chunks timed.')
flags.DEFINE_integer('repeats', 3, 'Timed repetitions; the best is kept.')
FLAGS = flags.FLAGS

LATENTS, HIDDEN, PIXELS = 50, 200, 784
STEPS = ('products and biases', '+ tanh', '+ Bernoulli log-probability',
         '+ noise, z, log q, log p(z)')


def step_loop(level, rows, rounds):
  """The estimate's work up to step ``level`` (1-4), ``rounds`` times."""
  rng = np.random.default_rng(0)
  w = [tf.constant(rng.normal(size=s).astype(np.float32) * 0.1)
       for s in [(LATENTS, HIDDEN), (HIDDEN, HIDDEN), (HIDDEN, PIXELS)]]
  b = [tf.constant(rng.normal(size=s).astype(np.float32) * 0.1) for s in (HIDDEN, HIDDEN, PIXELS)]
  x = tf.constant((rng.random((rows, PIXELS)) < 0.3).astype(np.float32))

  @tf.function(jit_compile=True, autograph=False)
  def run():
    def body(t, acc):
      extra = 0.0
      if level >= 4:
        eps = tf.random.stateless_normal([rows, LATENTS], tf.stack([t, 7]), alg='threefry')
        z = eps * 1.01 + 0.1
        extra = tf.reduce_sum(-0.5 * z * z, 1) - tf.reduce_sum(-0.5 * eps * eps, 1)
      else:  # a new z each round, so that nothing is hoisted out of the loop
        z = tf.fill([rows, LATENTS], tf.cast(t, tf.float32) * 1e-6)
      h = z @ w[0] + b[0]
      h = tf.tanh(h) if level >= 2 else h
      h = h @ w[1] + b[1]
      h = tf.tanh(h) if level >= 2 else h
      logits = h @ w[2] + b[2]
      if level >= 3:
        out = -tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels=x, logits=logits), 1)
      else:
        out = tf.reduce_sum(logits, 1)
      return t + 1, acc + tf.reduce_logsumexp(out + extra)
    return tf.while_loop(lambda t, a: t < rounds, body, (0, 0.0))[1]

  return run


def main(argv):
  del argv
  rows, rounds = FLAGS.rows, FLAGS.rounds
  runs = {name: step_loop(level, rows, rounds) for level, name in enumerate(STEPS, 1)}
  mnist = data_lib.mnist.load()
  cfg = experiments.run('iwae', 5).config()
  model = training.build_model(cfg, mnist.x_train)
  images, chunk = 20, rows // 20
  k = rounds * chunk // 10  # 10 batches of 20 images: rounds x rows samples in all
  x = data_lib.binarize_fixed(mnist.x_test[:10 * images], cfg.data.eval_seed)
  estimator = metrics.Estimator(model, batch_size=images, chunk=chunk)
  runs['metrics.Estimator (the estimate)'] = lambda: estimator.log_likelihood(x, k)
  for fn in runs.values():
    np.asarray(fn())  # compile
  best = dict.fromkeys(runs, float('inf'))
  for _ in range(FLAGS.repeats):
    for name, fn in runs.items():
      start = time.perf_counter()
      np.asarray(fn())
      best[name] = min(best[name], time.perf_counter() - start)
  samples = rows * rounds
  print(f'TensorFlow {tf.__version__}, {samples} samples in chunks of {rows}, '
        f'XLA_FLAGS={os.environ.get("XLA_FLAGS", "")!r}')
  first = best[STEPS[0]]
  for name, seconds in best.items():
    print(f'{name:<34} {seconds / samples * 1e9:>8.0f} ns/sample {seconds / first:>6.2f}x')


if __name__ == '__main__':
  app.run(main)

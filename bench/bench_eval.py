"""Time and memory of the K = 5000 NLL estimate versus its decoder products alone.

Prints, measured side by side in one run, for a 1-stochastic-layer model
(50 latents; trained weights do not change the cost):

* ``eval_s``: ``metrics.Estimator.log_likelihood`` on ``--images`` test
  images with ``K`` samples (batched, chunked, XLA-compiled);
* ``matmul_s``: just the decoder's forward products for the same samples
  (``[chunk*batch, 50] x [50, 200]``, ``x [200, 200]``, ``x [200, 784]``),
  in one compiled loop;
* their ratio (target <= 2), and the process's peak resident memory after
  each K, to show that memory does not grow with K.

Usage: python bench/bench_eval.py [--images=1000] [--ks=5000,50000]
The full test set is 10x the default ``--images``: scale ``eval_s`` by that.
"""

import os
import resource

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from iwae_tf import cli  # noqa: E402

cli.configure_xla()  # as train.py and evaluate.py

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import tensorflow as tf  # noqa: E402

import matmuls  # noqa: E402  (this folder's own: the script's directory leads sys.path)
from iwae_tf import datasets as data_lib  # noqa: E402
from iwae_tf import experiments  # noqa: E402
from iwae_tf import metrics  # noqa: E402
from iwae_tf import training  # noqa: E402

flags.DEFINE_integer('images', 1000, 'Test images.')
flags.DEFINE_string('ks', '5000', 'Values of K.')
flags.DEFINE_integer('batch_size', 100, 'Images per compiled call.')
flags.DEFINE_integer('chunk', 100, 'Samples per chunk.')
flags.DEFINE_integer('repeats', 2, 'Timed repetitions; the best is kept.')
FLAGS = flags.FLAGS


def peak_rss_gib():
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main(argv):
  del argv
  mnist = data_lib.mnist.load()
  cfg = experiments.run('iwae', 5).config()  # the paper's 1-layer model
  x = data_lib.binarize_fixed(mnist.x_test[:FLAGS.images], cfg.data.eval_seed)
  model = training.build_model(cfg, mnist.x_train)
  estimator = metrics.Estimator(model, batch_size=FLAGS.batch_size, chunk=FLAGS.chunk)
  print(f'TensorFlow {tf.__version__}, {os.cpu_count()} CPUs, {FLAGS.images} images, '
        f'batch {FLAGS.batch_size}, chunk {FLAGS.chunk}')
  print(f"{'K':>7} {'eval_s':>8} {'matmul_s':>9} {'ratio':>6} {'peak_GiB':>9}")
  for k in (int(v) for v in FLAGS.ks.split(',')):
    estimator.log_likelihood(x[:FLAGS.batch_size], k)  # compile
    eval_s = matmuls.best_time(lambda: estimator.log_likelihood(x, k), FLAGS.repeats)
    chunk = min(FLAGS.chunk, k)
    rounds = (FLAGS.images // FLAGS.batch_size) * (k // chunk)
    run = matmuls.matmul_loop([(chunk * FLAGS.batch_size, [50, 200, 200, 784], False)],
                              rounds, backward=False)
    run()
    matmul_s = matmuls.best_time(lambda: run().numpy(), FLAGS.repeats)
    print(f'{k:>7} {eval_s:>8.2f} {matmul_s:>9.2f} {eval_s / matmul_s:>6.2f} '
          f'{peak_rss_gib():>9.2f}', flush=True)


if __name__ == '__main__':
  app.run(main)

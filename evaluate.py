"""Measures trained runs as the paper did: test NLL with K = 5000, bounds, active units.

Examples:
  python evaluate.py --run_dir=runs/poster_iwae_k5
  python evaluate.py --run_dir=runs/poster_iwae_k5 --prune --train_subset=1000
  python evaluate.py --table --runs_root=runs --readme=README.md
"""

from iwae_tf import cli

cli.quiet_tensorflow()

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

# --- what to measure
flags.DEFINE_string('run_dir', None, 'Run directory written by train.py.')
flags.DEFINE_string('checkpoint', None, 'Epoch number or checkpoint path (default: latest).')
flags.DEFINE_integer('k_nll', 5000, 'Importance samples of the NLL estimate.')
flags.DEFINE_string('ks', '1,5,50', 'Bounds L_k to report.')
flags.DEFINE_integer('seed', 0, 'Seed of the importance samples.')
flags.DEFINE_integer('train_subset', 0, 'Also measure the first N training images.')
flags.DEFINE_bool('prune', False, 'Also measure the NLL with inactive units pruned.')
flags.DEFINE_integer('limit_test', None, 'Measure only the first N test images.')
# --- speed and memory
flags.DEFINE_integer('batch_size', 100, 'Images per compiled call.')
flags.DEFINE_integer('chunk', 100, 'Importance samples per chunk (memory ~ chunk x batch).')
# --- output
flags.DEFINE_string('output', None, 'Result file (default: RUN/results/eval-ckpt<E>-K<K>.json).')
flags.DEFINE_bool('overwrite', False, 'Replace an existing result file.')
# --- results table
flags.DEFINE_bool('table', False, 'Print the Markdown results table of all runs instead.')
flags.DEFINE_string('runs_root', 'runs', 'Where --table looks for results.')
flags.DEFINE_string('readme', None, 'With --table: also write it into this file between '
                    'the results-table markers.')

FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  from absl import logging
  logging.set_verbosity(logging.WARNING)
  from iwae_tf import evaluation
  if FLAGS.table:
    markdown = evaluation.table(evaluation.collect(FLAGS.runs_root))
    print(markdown, end='')
    if FLAGS.readme:
      evaluation.write_table(markdown, FLAGS.readme)
    return
  if not FLAGS.run_dir:
    raise app.UsageError('--run_dir is required (or --table)')
  evaluation.evaluate_run(
      FLAGS.run_dir, checkpoint=FLAGS.checkpoint, k_nll=FLAGS.k_nll,
      ks=cli.parse_int_list(FLAGS.ks, 'ks'), seed=FLAGS.seed,
      train_subset=FLAGS.train_subset, prune=FLAGS.prune, batch_size=FLAGS.batch_size,
      chunk=FLAGS.chunk, output=FLAGS.output, overwrite=FLAGS.overwrite,
      limit_test=FLAGS.limit_test)


if __name__ == '__main__':
  def _main(argv):
    from iwae_tf import data, evaluation, training
    return cli.run_main(main, argv, (ValueError, data.DataError, training.RunDirError,
                                     evaluation.EvaluationError))
  app.run(_main)

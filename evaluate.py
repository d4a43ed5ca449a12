"""Measures trained runs as the paper did: test NLL with K = 5000, bounds, active units.

Examples:
  python evaluate.py --run_dir=runs/iwae_k5_50_poster
  python evaluate.py --run_dir=runs/iwae_k5_50_poster --prune --train_subset=1000
  python evaluate.py --run_dir=runs/vae_k1_50_paper --milestones   # the learning curve
  python evaluate.py --run_dir=runs/vae_k1_50_paper --export=pretrained/vae_k1_50_paper
  python evaluate.py --table --write=README.md,docs/REPORT.md

Results go to results/<run>/ (the run directory's name), JSON with the
per-image estimates beside it (.npz); the tables are made from them.
"""

from iwae_tf import cli

cli.quiet_tensorflow()
cli.configure_xla()

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

# --- what to measure
flags.DEFINE_string('run_dir', None, 'Run directory written by train.py.')
flags.DEFINE_string('checkpoint', None, 'Epoch number or checkpoint path (default: latest).')
flags.DEFINE_bool('milestones', False, 'Measure every milestone checkpoint (the end of each '
                  'schedule stage) and the latest one, skipping those already measured.')
flags.DEFINE_integer('k_nll', 5000, 'Importance samples of the NLL estimate.')
flags.DEFINE_string('ks', '1,5,50', 'Bounds L_k to report.')
flags.DEFINE_integer('seed', 0, 'Seed of the importance samples.')
flags.DEFINE_integer('train_subset', 0, 'Also measure the first N training images (a '
                     'fixed-binarisation run\'s as it was trained on them).')
flags.DEFINE_bool('prune', False, 'Also measure the NLL with inactive units pruned.')
flags.DEFINE_integer('limit_test', None, 'Measure only the first N test images.')
# --- speed and memory
flags.DEFINE_integer('batch_size', 100, 'Images per compiled call.')
flags.DEFINE_integer('chunk', 100, 'Importance samples per chunk (memory ~ chunk x batch).')
# --- output
flags.DEFINE_string('results_root', 'results', 'Where results are written and --table reads '
                    'them: RESULTS_ROOT/<run>/eval-ckpt<E>-K<K>.json.')
flags.DEFINE_string('output', None, 'Result file (default: RESULTS_ROOT/<run>/eval-ckpt<E>-K<K>.json).')
flags.DEFINE_string('export', None, 'Instead of measuring, write the checkpoint\'s model weights '
                    '(no optimizer state) and configuration to this new directory, which '
                    'evaluate.py and the figure script read like a run directory.')
flags.DEFINE_bool('overwrite', False, 'Replace an existing result file.')
# --- results table
flags.DEFINE_bool('table', False, 'Print the Markdown results table of all runs instead, '
                  'and the paper-schedule runs\' learning curve.')
flags.DEFINE_list('write', [], 'With --table: also rewrite the generated tables in these '
                  'documents, between their markers (README.md,docs/REPORT.md).')

FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  cli.start_tensorflow()
  from iwae_tf import checkpoints, config, evaluation  # pylint: disable=import-outside-toplevel
  from iwae_tf import results as results_lib  # pylint: disable=import-outside-toplevel
  from iwae_tf import tables as tables_lib  # pylint: disable=import-outside-toplevel
  if FLAGS.table:
    results = list(results_lib.read_results(FLAGS.results_root))
    markdown = tables_lib.table(results_lib.newest(results))
    curve = tables_lib.learning_curve_table(results)
    departed = tables_lib.departure_curve_table(results)
    print(markdown + (f'\nThe paper-schedule runs at the ends of its stages:\n\n{curve}'
                      if curve else '')
          + (f'\nThe runs that depart from the paper setup, beside it:\n\n{departed}'
             if departed else ''), end='')
    if FLAGS.write:
      tables_lib.write_tables(results, FLAGS.write)
    return
  if not FLAGS.run_dir:
    raise app.UsageError('--run_dir is required (or --table)')
  if FLAGS.export:
    path = checkpoints.export_pretrained(FLAGS.run_dir, FLAGS.export, FLAGS.checkpoint)
    print(f'exported {path}')
    return
  kwargs = dict(k_nll=FLAGS.k_nll, ks=config.parse_int_list(FLAGS.ks, 'ks'), seed=FLAGS.seed,
                train_subset=FLAGS.train_subset, prune=FLAGS.prune,
                batch_size=FLAGS.batch_size, chunk=FLAGS.chunk, overwrite=FLAGS.overwrite,
                limit_test=FLAGS.limit_test, results_root=FLAGS.results_root)
  if FLAGS.milestones and (FLAGS.checkpoint or FLAGS.output):
    raise app.UsageError('--milestones measures several checkpoints: drop --checkpoint/--output')
  if FLAGS.milestones:
    evaluation.evaluate_milestones(FLAGS.run_dir, **kwargs)
  else:
    evaluation.evaluate_run(FLAGS.run_dir, checkpoint=FLAGS.checkpoint, output=FLAGS.output,
                            **kwargs)


if __name__ == '__main__':
  def _main(argv):
    return cli.run_main(main, argv)
  app.run(_main)

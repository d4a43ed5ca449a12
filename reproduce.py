"""Reproduces the paper's experiments: the named runs, trained, measured and exported.

Examples:
  python reproduce.py --list
  python reproduce.py table1 --dry_run          # a line per job, for a scheduler
  python reproduce.py table1 --jobs=2           # run what is missing, 2 at a time
  python reproduce.py table1 original seeds --status
  python reproduce.py table1-omniglot --data=PATH/chardata.mat --jobs=2
  python reproduce.py table1 --pack=inflight    # before the machine goes: commit inflight/
  python reproduce.py table1 --unpack=inflight --jobs=2   # on the next machine
  python reproduce.py table1 --unpack=inflight --keep_packed=inflight --jobs=2
                                                # and keep the packs fresh as it runs

Safe to kill and rerun at any moment: each run resumes from its last
checkpoint, and each milestone is measured once (iwae_tf/reproduction.py).
A run outlives its machine in a pack: its newest checkpoint, unmeasured
milestones, configuration and logs (iwae_tf/packing.py).
"""

from iwae_tf import cli

cli.quiet_tensorflow()
cli.configure_xla()

import sys  # noqa: E402
import time  # noqa: E402

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

flags.DEFINE_bool('list', False, 'Name the experiment sets and their runs.')
flags.DEFINE_bool('dry_run', False, 'Print one line per job (done / in progress / to do, and '
                  'the commands left to run) instead of running anything.')
flags.DEFINE_bool('status', False, "Print each run's epoch, seconds per epoch, training time "
                  'left and newest test NLL.')
flags.DEFINE_integer('jobs', 1, 'Jobs run at once. With no more jobs than cores, the cores are '
                     'split between them (one job: every core; as many jobs as cores: one each).')
flags.DEFINE_string('data', None, 'The data file of the sets that need one (OMNIGLOT).')
flags.DEFINE_string('runs_root', 'runs', 'Where the run directories and their logs live.')
flags.DEFINE_string('results_root', 'results', 'Where the results are written.')
flags.DEFINE_string('pretrained_root', 'iwae_tf/pretrained', 'Where the final weights are '
                    'exported (the package\'s own models: iwae_tf.pretrained).')
flags.DEFINE_list('documents', ['README.md', 'docs/REPORT.md'], 'Documents whose generated '
                  "tables are rewritten after each measurement ('' for none).")
flags.DEFINE_string('figures_dir', 'figures', 'Where the figures made from results alone (the '
                    "learning curve, NLL against k, active units) are redrawn after each "
                    "measurement ('' for none).")

flags.DEFINE_string('pack', None, "Write each unfinished run's newest checkpoint (with its "
                    'unmeasured milestones, configuration and TensorBoard logs) to PACK/<name>/, '
                    'replacing an older pack, and exit: commit or copy PACK, and the runs go on '
                    'on another machine with --unpack.')
flags.DEFINE_string('unpack', None, 'First copy each pack UNPACK/<name>/ into its run directory '
                    'where the run is behind it or missing (nothing there is replaced), then go '
                    'on as asked.')

flags.DEFINE_string('keep_packed', None, 'While the queue runs, keep the packs of --pack in '
                    'KEEP_PACKED/<name>/ up to date: every --pack_every seconds and when the queue '
                    'is stopped, so that a machine lost without warning costs at most that much '
                    'of each run.')
flags.DEFINE_integer('pack_every', 600, 'Seconds between two refreshes of the packs of '
                     '--keep_packed.')

FLAGS = flags.FLAGS


def main(argv):
  cli.start_tensorflow()
  from iwae_tf import experiments
  if FLAGS.list:
    for name, exps in experiments.SETS.items():
      print(f'{name}: {experiments.SET_HELP[name]}')
      for exp in exps:
        print(f'  {exp.name}')
    return
  names = argv[1:]
  if not names:
    raise app.UsageError('name one or more experiment sets (python reproduce.py --list)')
  exps = experiments.select(names, FLAGS.data)
  roots = experiments.Roots(FLAGS.runs_root, FLAGS.results_root, FLAGS.pretrained_root)
  from iwae_tf import packing
  from iwae_tf import reproduction
  if FLAGS.pack:
    packing.pack_experiments(exps, roots, FLAGS.pack)
    return
  if FLAGS.unpack:
    packing.unpack_experiments(exps, roots, FLAGS.unpack)
  if FLAGS.dry_run:
    print(reproduction.dry_run(exps, roots))
    return
  if FLAGS.status:
    print(reproduction.status(exps, roots))
    return
  say = lambda line: print(time.strftime('%Y-%m-%d %H:%M:%S ') + line, flush=True)  # noqa: E731
  try:
    failed = reproduction.Queue(exps, roots, FLAGS.jobs, [d for d in FLAGS.documents if d], say,
                                figures_dir=FLAGS.figures_dir or None,
                                pack_dir=FLAGS.keep_packed, pack_every=FLAGS.pack_every).run()
  except reproduction.Stopped as e:
    print(f'stopped: {e}', file=sys.stderr)
    sys.exit(e.status)
  if failed:
    print(f'error: {len(failed)} job(s) failed: {", ".join(failed)} (their logs are in '
          f'{FLAGS.runs_root}/)', file=sys.stderr)
    sys.exit(1)
  print('every job is done')


if __name__ == '__main__':
  def _main(argv):
    return cli.run_main(main, argv)
  app.run(_main)

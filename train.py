"""Trains an IWAE or VAE on MNIST (Burda, Grosse & Salakhutdinov, 2016).

Examples:
  python train.py --latents=50 --objective=iwae --k=5 --schedule=poster
  python train.py --latents=100,50 --objective=vae --k=50 --schedule=paper
  python train.py --strategy=mirrored --k=50           # every local GPU
  tensorboard --logdir runs/

Rerunning the same command resumes from the latest checkpoint.
"""

from iwae_tf import cli

cli.quiet_tensorflow()
cli.configure_xla()

import dataclasses  # noqa: E402

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from iwae_tf import config as config_names  # noqa: E402  (pure Python: the choices below)
from iwae_tf import paper  # noqa: E402

# The flags' defaults are the configuration's (the paper's setup, paper.py).
_M, _O, _P = config_names.ModelConfig, config_names.ObjectiveConfig, config_names.OptimConfig
_D, _T = config_names.DataConfig, config_names.TrainConfig

# --- model
flags.DEFINE_string('latents', ','.join(map(str, _M.latents)), 'Stochastic layer sizes, bottom first: 50 (paper, '
                    '1 layer), 100,50 (paper, 2 layers), 2 (2-D scatter plots).')
flags.DEFINE_string('hidden', None, 'Hidden tanh layer sizes per stochastic layer, '
                    "';'-separated lists, e.g. '200,200;100,100'. Default: the paper's.")
# --- objective
flags.DEFINE_enum('objective', _O.name, list(config_names.OBJECTIVES),
                  'Training objective: ' + config_names.describe(config_names.OBJECTIVES) + '.')
flags.DEFINE_integer('k', _O.k, 'Importance samples per image (per group for miwae/piwae).')
flags.DEFINE_enum('estimator', _O.estimator, list(config_names.ESTIMATORS),
                  'Gradient estimator: ' + config_names.describe(config_names.ESTIMATORS) + '.')
flags.DEFINE_integer('groups', _O.groups, 'M groups of k samples (miwae, piwae).')
flags.DEFINE_float('beta', _O.beta, 'ELBO weight of ciwae.')
# --- optimisation
flags.DEFINE_enum('schedule', _P.schedule, list(config_names.SCHEDULES),
                  'Learning-rate schedule: ' + config_names.describe(config_names.SCHEDULES) + '.')
flags.DEFINE_integer('epochs', None, 'Cut the schedule after this many epochs.')
flags.DEFINE_integer('batch_size', _P.batch_size, 'Batch size.')
flags.DEFINE_float('learning_rate', _P.learning_rate, 'Stage-0 learning rate.')
flags.DEFINE_float('beta1', None, f'Adam beta1 (default {_P.beta1:g}; '
                  f"{paper.ORIGINAL_DEFAULTS['beta1']:g} under --procedure=original).")
flags.DEFINE_float('beta2', _P.beta2, 'Adam beta2.')
flags.DEFINE_float('adam_epsilon', _P.epsilon, 'Adam epsilon.')
# --- data
flags.DEFINE_string('data', None, "MNIST: a Keras-layout .npz, a directory of IDX files, "
                    "or 'keras' for Keras' cache. Default: the embedded copy.")
flags.DEFINE_integer('validation_size', None, 'Training images held out for validation, from '
                     f'the end (default {_D.validation_size}; '
                     f"{paper.ORIGINAL_DEFAULTS['validation_size']} under --procedure=original).")
flags.DEFINE_integer('limit_train', None, 'Use only the first N training images.')
flags.DEFINE_enum('dataset', _D.dataset, config_names.DATASETS, 'Data set: mnist (embedded) or '
                  'omniglot (--data=PATH/chardata.mat, the original IWAE code\'s 28x28 file).')
flags.DEFINE_integer('shuffle_seed', None, 'Shuffle the training set with this seed before '
                     'holding out --validation_size images (the original code\'s OMNIGLOT '
                     'split: --validation_size=1345 --shuffle_seed=123).')
flags.DEFINE_enum('binarization', _D.binarization, config_names.BINARIZATIONS,
                  'dynamic: a fresh binarisation of each batch (the paper); fixed: the training '
                  'set binarised once with --train_binarization_seed (the paper\'s appendix).')
flags.DEFINE_integer('train_binarization_seed', _D.train_binarization_seed, 'Seed of --binarization=fixed.')
flags.DEFINE_string('init_from', None, 'Start from the final weights of this run directory '
                    '(left untouched; recorded in the new run), e.g. a VAE continued as an '
                    'IWAE with --schedule=continue (the paper\'s Table 2).')
flags.DEFINE_enum('procedure', _T.procedure, list(config_names.PROCEDURES),
                  'Training procedure: ' + config_names.describe(config_names.PROCEDURES) + '.')
# --- run
flags.DEFINE_string('run_dir', None, 'Run directory (default: runs/<architecture>).')
flags.DEFINE_integer('seed', _T.seed, 'Random seed.')
flags.DEFINE_integer('steps_per_execution', _T.steps_per_execution, 'Optimisation steps per compiled call (an '
                     "epoch's last call runs the steps left over; under --strategy=mirrored or "
                     'multiworker, rounded down to divide the epoch); also the granularity of '
                     'the per-step loss in TensorBoard.')
flags.DEFINE_bool('jit_compile', _T.jit_compile, 'Compile the training step with XLA.')
# --- devices
flags.DEFINE_enum('strategy', _T.strategy, list(config_names.STRATEGIES),
                  'tf.distribute strategy: ' + config_names.describe(config_names.STRATEGIES) +
                  '. --batch_size is the global batch; results do not depend on the number '
                  'of replicas.')
flags.DEFINE_list('devices', [], "mirrored: devices to use, e.g. '/gpu:0,/gpu:1' "
                  '(default: every local GPU).')
flags.DEFINE_integer('verbose', _T.verbose, 'Progress: 0 silent, 1 a line per epoch updated after '
                     'each compiled call, 2 a line per epoch.')

FLAGS = flags.FLAGS


def make_config():
  """Maps the flags, once, to a frozen ``TrainConfig`` (``config.from_flags``)."""
  from iwae_tf import config as c
  from iwae_tf import rundir
  config = c.from_flags(**{name: FLAGS[name].value for name in c.FLAG_NAMES})
  if FLAGS.run_dir is None:
    config = dataclasses.replace(config, run_dir=rundir.default_run_dir(config))
  return config


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  cli.start_tensorflow()
  from iwae_tf import training
  config = make_config()
  training.train(config)
  print(f'done: {config.run_dir} (tensorboard --logdir {config.run_dir}/tensorboard)')


if __name__ == '__main__':
  def _main(argv):
    return cli.run_main(main, argv)
  app.run(_main)

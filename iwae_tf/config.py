"""Frozen configuration of an experiment.

Flags live only in the entry points (``train.py``, ``evaluate.py``); they are
mapped once to these dataclasses (``from_flags``), which the library takes.
Their defaults are the paper's setup (``paper.py``, where the schedule and
the original code's procedure are described).
"""

import dataclasses
import json
from typing import Optional, Tuple

from iwae_tf import datasets as data_lib
from iwae_tf import errors
from iwae_tf import paper

# The last stage (epochs 1094-3280) is two thirds of the run: its checkpoints are
# also kept, and measured, every 500 epochs, so that its learning curve fills in.
LAST_STAGE_EVERY = 500
MILESTONES = tuple(sorted(set(paper.STAGE_ENDS) | set(range(
    paper.STAGE_ENDS[-2] + LAST_STAGE_EVERY, paper.STAGE_ENDS[-1], LAST_STAGE_EVERY))))
# The registries of names. Each maps a name to its one-line help; the flags'
# choices and help text, the checks below and the classes that implement the
# names (objectives.ESTIMATORS, distribute.make_strategy) all derive from
# them, and tests/test_objectives.py checks the classes cover them exactly.
# (Pure Python, so that ``train.py --help`` need not start TensorFlow.)
SCHEDULES = {
    'paper': '3280 epochs in 8 stages',
    'poster': 'the same cut at 70 epochs',
    'continue': '2187 epochs at a tenth of --learning_rate, after --init_from'}
OBJECTIVES = {'iwae': 'L_k', 'vae': 'the k-sample ELBO'}
PROCEDURES = {
    'paper': "the paper's text",
    'original': "the authors' code: Adam beta1 0.99 with v0 = 1, the loss summed over "
                'the batch, a fixed batch order, 400 images held out, rounded rates'}


@dataclasses.dataclass(frozen=True)
class EstimatorInfo:
  """What a gradient estimator is, for configuration and help.

  Attributes:
    help: one line for ``--help``.
    objectives: the objectives it estimates the gradient of.
    groups: whether it takes M > 1 groups (``--groups``).
  """
  help: str
  objectives: Tuple[str, ...] = ('iwae',)
  groups: bool = False


ESTIMATORS = {
    'iwae': EstimatorInfo('standard reparameterised', ('iwae', 'vae')),
    'stl': EstimatorInfo('sticking the landing', ('iwae', 'vae')),
    'dreg': EstimatorInfo('doubly reparameterised'),
    'miwae': EstimatorInfo('mean of M L_k, --groups', groups=True),
    'ciwae': EstimatorInfo('beta ELBO + (1 - beta) L_k, --beta'),
    'piwae': EstimatorInfo('decoder on L_Mk, encoder on MIWAE, --groups', groups=True)}
STRATEGIES = {
    'default': 'one device',
    'mirrored': 'all local GPUs, or --devices',
    'multiworker': 'hosts named by TF_CONFIG'}


def describe(registry):
  """``'name (help), ...'`` for a flag's help text."""
  return ', '.join(f'{name} ({getattr(info, "help", info)})' for name, info in registry.items())


DATASETS = tuple(data_lib.DATASETS)
BINARIZATIONS = ('dynamic', 'fixed')


class ConfigError(errors.IWAEError):
  """A configuration that cannot describe a valid experiment."""


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Architecture.

  Attributes:
    latents: sizes of the stochastic layers, bottom (nearest x) first;
      ``(50,)`` is the paper's 1-layer model, ``(100, 50)`` the 2-layer one.
    hidden: per stochastic layer, the deterministic tanh layer sizes of the
      network between it and the layer below (the decoder mirrors them).
    data_dim: number of pixels.
  """
  latents: Tuple[int, ...] = paper.LATENTS
  hidden: Tuple[Tuple[int, ...], ...] = paper.hidden_sizes(paper.LATENTS)
  data_dim: int = 784

  def __post_init__(self):
    if not self.latents or any(int(d) < 1 for d in self.latents):
      raise ConfigError(f'latents must be positive sizes, got {self.latents}')
    if len(self.hidden) != len(self.latents):
      raise ConfigError('need one hidden-size tuple per stochastic layer, got '
                        f'{len(self.hidden)} for {len(self.latents)} layers')


@dataclasses.dataclass(frozen=True)
class ObjectiveConfig:
  """Training objective and gradient estimator (see ``objectives.py``).

  Attributes:
    name: ``iwae`` or ``vae``.
    k: importance samples per group.
    estimator: gradient estimator, one of ESTIMATORS (``iwae`` is the
      standard reparameterised gradient of the objective).
    groups: M, for ``miwae`` and ``piwae``.
    beta: ELBO weight of ``ciwae``.
  """
  name: str = 'iwae'
  k: int = 5
  estimator: str = 'iwae'
  groups: int = 1
  beta: float = 0.5

  def __post_init__(self):
    if self.name not in OBJECTIVES:
      raise ConfigError(f'unknown objective {self.name!r}; choose from {tuple(OBJECTIVES)}')
    if self.k < 1:
      raise ConfigError(f'k must be >= 1, got {self.k}')
    if self.estimator not in ESTIMATORS:
      raise ConfigError(f'unknown estimator {self.estimator!r}; choose from '
                        f'{tuple(ESTIMATORS)}')
    info = ESTIMATORS[self.estimator]
    if self.name not in info.objectives:
      raise ConfigError(f'estimator {self.estimator!r} needs --objective='
                        f'{" or ".join(info.objectives)}')
    if self.groups < 1:
      raise ConfigError(f'groups must be >= 1, got {self.groups}')
    if self.groups > 1 and not info.groups:
      grouped = ' or '.join(n for n, i in ESTIMATORS.items() if i.groups)
      raise ConfigError(f'groups={self.groups} is for --estimator={grouped}')
    if not 0.0 <= self.beta <= 1.0:
      raise ConfigError(f'beta must be in [0, 1], got {self.beta}')


@dataclasses.dataclass(frozen=True)
class OptimConfig:
  """Adam and the learning-rate schedule (paper's values by default)."""
  learning_rate: float = paper.ADAM['learning_rate']
  beta1: float = paper.ADAM['beta1']
  beta2: float = paper.ADAM['beta2']
  epsilon: float = paper.ADAM['epsilon']
  batch_size: int = paper.BATCH_SIZE
  schedule: str = 'paper'

  def __post_init__(self):
    if self.schedule not in SCHEDULES:
      raise ConfigError(f'unknown schedule {self.schedule!r}; choose from {tuple(SCHEDULES)}')
    if self.batch_size < 1:
      raise ConfigError(f'batch_size must be >= 1, got {self.batch_size}')
    if not self.learning_rate > 0:
      raise ConfigError(f'learning_rate must be > 0, got {self.learning_rate}')
    for name in ('beta1', 'beta2'):
      if not 0.0 <= getattr(self, name) < 1.0:
        raise ConfigError(f'{name} must be in [0, 1), got {getattr(self, name)}')
    if not self.epsilon > 0:
      raise ConfigError(f'adam_epsilon must be > 0, got {self.epsilon}')


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Where the data comes from and how it is split.

  Attributes:
    path: None for the embedded MNIST copy, ``'keras'`` for Keras' cache, or a
      user's ``.npz`` file or directory of IDX files.
    validation_size: number of training images held out for validation (taken
      from the end of the training set). 0 trains on all 60,000 as the paper.
    eval_seed: seed of the one fixed binarisation of evaluation data.
    limit_train: keep only the first N training images (tests, quick runs).
    dataset: a name registered in ``datasets.DATASETS``.
    shuffle_seed: shuffle the training set with this seed before holding out
      validation (None: no shuffle).
    binarization: ``dynamic`` (the paper) or ``fixed`` (the training set
      binarised once with ``train_binarization_seed``; the paper's appendix).
  """
  path: Optional[str] = None
  validation_size: int = 0
  eval_seed: int = 0
  limit_train: Optional[int] = None
  dataset: str = 'mnist'
  shuffle_seed: Optional[int] = None
  binarization: str = 'dynamic'
  train_binarization_seed: int = 0

  def __post_init__(self):
    if self.dataset not in DATASETS:
      raise ConfigError(f'unknown dataset {self.dataset!r}; choose from {DATASETS}')
    if self.binarization not in BINARIZATIONS:
      raise ConfigError(f'binarization must be one of {BINARIZATIONS}, got {self.binarization!r}')
    if self.validation_size < 0:
      raise ConfigError(f'validation_size must be >= 0, got {self.validation_size}')
    if self.limit_train is not None and self.limit_train < 1:
      raise ConfigError(f'limit_train must be >= 1, got {self.limit_train}')


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Everything one training run needs."""
  model: ModelConfig = ModelConfig()
  objective: ObjectiveConfig = ObjectiveConfig()
  optim: OptimConfig = OptimConfig()
  data: DataConfig = DataConfig()
  seed: int = 0
  epochs: Optional[int] = None  # cut the schedule after this many epochs
  run_dir: str = 'runs/default'
  steps_per_execution: int = 300  # optimisation steps per compiled call
  jit_compile: bool = True
  strategy: str = 'default'  # default | mirrored | multiworker (distribute.py)
  devices: Tuple[str, ...] = ()  # mirrored: device names (default: all GPUs)
  summary_subset: int = 1000  # images used for per-epoch train L_k / active units
  verbose: int = 1
  init_from: Optional[str] = None  # a run directory whose final weights start this run
  procedure: str = 'paper'  # paper | original (module docstring)

  def __post_init__(self):
    if self.procedure not in PROCEDURES:
      raise ConfigError(f'unknown procedure {self.procedure!r}; choose from {tuple(PROCEDURES)}')
    if self.epochs is not None and self.epochs < 1:
      raise ConfigError(f'epochs must be >= 1, got {self.epochs}')
    if self.steps_per_execution < 1:
      raise ConfigError(f'steps_per_execution must be >= 1, got {self.steps_per_execution}')
    if self.seed < 0:
      raise ConfigError(f'seed must be >= 0, got {self.seed}')
    if self.summary_subset < 1:
      raise ConfigError(f'summary_subset must be >= 1, got {self.summary_subset}')
    if self.verbose not in (0, 1, 2):
      raise ConfigError(f'verbose must be 0, 1 or 2, got {self.verbose}')
    if self.strategy not in STRATEGIES:
      raise ConfigError(f'--strategy={self.strategy!r}: expected one of {", ".join(STRATEGIES)}')
    if self.devices and self.strategy != 'mirrored':
      raise ConfigError(f'--devices is only for --strategy=mirrored (got --strategy={self.strategy})')
    if self.strategy != 'default' and self.optim.batch_size % max(1, len(self.devices)):
      raise ConfigError(f'--batch_size={self.optim.batch_size} is not divisible by the '
                        f'{len(self.devices)} --devices')

  @property
  def total_epochs(self):
    full = {'paper': paper.PAPER_EPOCHS, 'poster': paper.POSTER_EPOCHS,
            'continue': paper.CONTINUE_EPOCHS}[self.optim.schedule]
    return full if self.epochs is None else min(self.epochs, full)

  @property
  def milestones(self):
    """Epochs whose checkpoints are kept for good (and measured by the
    reproduction queue): the stage ends and, in the last stage, every
    ``LAST_STAGE_EVERY`` epochs; for ``continue``, the powers of 3 up to 2187."""
    if self.optim.schedule == 'continue':
      return tuple(3**i for i in range(8))
    return MILESTONES

  def learning_rate(self, epoch):
    """The learning rate of 0-based ``epoch`` under this run's schedule."""
    return paper.learning_rate(epoch, self.optim.learning_rate, self.optim.schedule,
                               rounded=self.procedure == 'original')

  @property
  def sum_over_batch(self):
    """Whether the loss is summed over a minibatch's images (the original code)."""
    return self.procedure == 'original'

  @property
  def shuffle(self):
    """Whether each epoch visits the minibatches in a new order (the paper)."""
    return self.procedure != 'original'

  def to_dict(self):
    return dataclasses.asdict(self)

  # The fields that define the experiment: a run directory may only be
  # resumed with the same values. The others (run length, speed knobs,
  # verbosity, where the run lives) may change between invocations.
  IDENTITY_FIELDS = ('model', 'objective', 'optim', 'data', 'seed', 'init_from', 'procedure')

  def identity(self):
    d = self.to_dict()
    return json.loads(json.dumps({f: d[f] for f in self.IDENTITY_FIELDS}))

  @classmethod
  def from_dict(cls, d):
    m = dict(d['model'])
    m['latents'] = tuple(m['latents'])
    m['hidden'] = tuple(tuple(h) for h in m['hidden'])
    rest = {k: v for k, v in d.items() if k not in ('model', 'objective', 'optim', 'data')}
    if 'devices' in rest:
      rest['devices'] = tuple(rest['devices'])
    return cls(model=ModelConfig(**m), objective=ObjectiveConfig(**d['objective']),
               optim=OptimConfig(**d['optim']), data=DataConfig(**d['data']), **rest)


def from_flags(**values):
  """The ``TrainConfig`` of ``train.py``'s flag values, given by flag name;
  a flag left out (or None where None means "default") takes its default:
  the dataclasses' (the paper's), or under ``procedure='original'`` those of
  ``paper.ORIGINAL_DEFAULTS``. ``train.py`` and the named experiments
  (``experiments.py``) both build their configurations here.

  Raises:
    ConfigError: a malformed list or an invalid value.
  """
  unknown = set(values) - set(FLAG_NAMES)
  if unknown:
    raise ConfigError(f'unknown flags: {", ".join(sorted(unknown))}')
  v = {name: values.get(name) for name in FLAG_NAMES}
  procedure = v['procedure'] or TrainConfig.procedure
  procedure_defaults = paper.ORIGINAL_DEFAULTS if procedure == 'original' else {}

  def get(name, default):
    if v[name] is not None:
      return v[name]
    return procedure_defaults.get(name, default)

  latents = parse_int_list(get('latents', '50'), 'latents')
  hidden = (paper.hidden_sizes(latents) if v['hidden'] is None else
            tuple(parse_int_list(h, 'hidden') for h in v['hidden'].split(';')))
  o, opt, d, t = ObjectiveConfig, OptimConfig, DataConfig, TrainConfig
  return TrainConfig(
      model=ModelConfig(latents=latents, hidden=hidden),
      objective=ObjectiveConfig(name=get('objective', o.name), k=get('k', o.k),
                                estimator=get('estimator', o.estimator),
                                groups=get('groups', o.groups), beta=get('beta', o.beta)),
      optim=OptimConfig(learning_rate=get('learning_rate', opt.learning_rate),
                        beta1=get('beta1', opt.beta1), beta2=get('beta2', opt.beta2),
                        epsilon=get('adam_epsilon', opt.epsilon),
                        batch_size=get('batch_size', opt.batch_size),
                        schedule=get('schedule', opt.schedule)),
      data=DataConfig(path=v['data'], validation_size=get('validation_size', d.validation_size),
                      limit_train=v['limit_train'], dataset=get('dataset', d.dataset),
                      shuffle_seed=v['shuffle_seed'],
                      binarization=get('binarization', d.binarization),
                      train_binarization_seed=get('train_binarization_seed',
                                                  d.train_binarization_seed)),
      seed=get('seed', t.seed), epochs=v['epochs'], init_from=v['init_from'],
      run_dir=v['run_dir'] or 'unset',
      steps_per_execution=get('steps_per_execution', t.steps_per_execution),
      jit_compile=get('jit_compile', t.jit_compile), strategy=get('strategy', t.strategy),
      devices=tuple(v['devices'] or ()), verbose=get('verbose', t.verbose),
      procedure=procedure)


# train.py's flags that define a run, by name (``from_flags``).
FLAG_NAMES = ('latents', 'hidden', 'objective', 'k', 'estimator', 'groups', 'beta', 'schedule',
              'epochs', 'batch_size', 'learning_rate', 'beta1', 'beta2', 'adam_epsilon', 'data',
              'validation_size', 'limit_train', 'dataset', 'shuffle_seed', 'binarization',
              'train_binarization_seed', 'init_from', 'run_dir', 'seed', 'steps_per_execution',
              'jit_compile', 'strategy', 'devices', 'verbose', 'procedure')


def parse_int_list(text, name):
  """'100,50' -> (100, 50); an empty item (``'50,,'``, ``',50'``) or a
  non-integer raises ``ConfigError`` naming the flag."""
  items = [item.strip() for item in str(text).split(',')]
  if not any(items):
    raise ConfigError(f'--{name} is empty')
  try:
    values = tuple(int(item) for item in items)
  except ValueError:
    raise ConfigError(f'--{name}={text!r}: expected a comma-separated list of integers'
                      + (' (with no empty item)' if '' in items else '')) from None
  return values

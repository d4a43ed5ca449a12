"""The named runs: every experiment of the reproduction, as ``train.py`` flags.

An ``Experiment`` is a set of ``train.py`` flags (the rest take the paper's
defaults, ``config.from_flags``), from which follow its ``TrainConfig``, its
run name (``rundir.run_name``) and its command lines. ``SETS`` groups them as
``reproduce.py`` offers them; ``QUEUE`` orders every experiment once, the
longest and most wanted first (the order in which the reproduction queue
starts them).

The sets:

* ``table1``: the paper's Table 1 on MNIST, 1 and 2 stochastic layers, VAE
  and IWAE with k = 1, 5, 50 (VAE and IWAE coincide at k = 1: ten runs), the
  full 3280-epoch schedule.
* ``table1-omniglot``: the same on OMNIGLOT, the original code's split
  (``--data`` names the user's ``chardata.mat``).
* ``table2``: the paper's Table 2, both directions: the 3280-epoch VAE k = 1
  continued as IWAE k = 50 and as itself, and the IWAE k = 50 continued as
  VAE k = 1 and as itself (``--schedule=continue``, 2187 epochs).
* ``poster``: the poster's 70-epoch grid, 50 and 2 latents.
* ``original``: the original code's procedure (``--procedure=original``).
* ``seeds``: the paper's runs again with another seed (the seed-to-seed spread).
* ``smoke``: two tiny runs, seconds each: a check of the queue itself.

The figures' runs (``figure_run``, for ``plots/regenerate.py``) are the
poster-schedule runs with 2 latents (cut short with ``epochs``) and 50.
"""

import dataclasses
import os
from typing import Optional, Tuple

from iwae_tf import config as config_lib
from iwae_tf import rundir


@dataclasses.dataclass(frozen=True)
class Experiment:
  """One training run and how it is measured.

  Attributes:
    flags: ``train.py`` flags as ``(name, value)`` pairs; ``--run_dir`` is
      not among them (it follows from the name and the runs' root).
    source: for ``--init_from``, the experiment whose final weights start
      this one; it must be finished first.
    k_nll: importance samples of the test NLL at each milestone.
    limit_test: measure only the first N test images (``smoke``).
    export: whether the final weights go to ``pretrained/``.
  """
  flags: Tuple[Tuple[str, object], ...]
  source: Optional['Experiment'] = None
  k_nll: int = 5000
  limit_test: Optional[int] = None
  export: bool = True

  def config(self, roots=None):
    """The run's ``TrainConfig``, its run directory under ``roots.runs``."""
    roots = roots or Roots()
    values = dict(self.flags)
    if self.source is not None:
      values['init_from'] = self.source.weights_dir(roots)
    cfg = config_lib.from_flags(**values)
    return dataclasses.replace(cfg, run_dir=os.path.join(roots.runs, rundir.run_name(cfg)))

  @property
  def name(self):
    """The run's name (``rundir.run_name``), the same whatever the roots."""
    return os.path.basename(self.config().run_dir)

  def run_dir(self, roots=None):
    return self.config(roots).run_dir

  def weights_dir(self, roots=None):
    """Where the final weights are read from: the exported model when there is
    one, else the run directory."""
    roots = roots or Roots()
    exported = os.path.join(roots.pretrained, self.name)
    return exported if os.path.isdir(exported) else os.path.join(roots.runs, self.name)

  @property
  def epochs(self):
    return self.config().total_epochs

  @property
  def milestones(self):
    """The epochs measured: the run's milestones up to its end, and its end."""
    cfg = self.config()
    return tuple(sorted({e for e in cfg.milestones if e < cfg.total_epochs}
                        | {cfg.total_epochs}))

  def train_command(self, roots=None, epochs=None):
    """``train.py``'s command line (``epochs``: stop there, to resume later)."""
    roots = roots or Roots()
    args = [f'--{name}={_flag_text(value)}' for name, value in self.flags]
    if self.source is not None:
      args.append(f'--init_from={self.source.weights_dir(roots)}')
    args.append(f'--run_dir={self.run_dir(roots)}')
    if epochs is not None and epochs < self.epochs:
      args.append(f'--epochs={epochs}')
    return ['python', 'train.py', *args]

  def evaluate_command(self, epoch, roots=None):
    roots = roots or Roots()
    args = [f'--run_dir={self.run_dir(roots)}', f'--checkpoint={epoch}',
            f'--k_nll={self.k_nll}', f'--results_root={roots.results}']
    if self.limit_test is not None:
      args.append(f'--limit_test={self.limit_test}')
    return ['python', 'evaluate.py', *args]

  def export_command(self, roots=None):
    roots = roots or Roots()
    return ['python', 'evaluate.py', f'--run_dir={self.run_dir(roots)}',
            f'--export={os.path.join(roots.pretrained, self.name)}',
            f'--checkpoint={self.epochs}']

  def result_path(self, epoch, roots=None):
    roots = roots or Roots()
    return rundir.result_path(self.run_dir(roots), epoch, self.k_nll, self.limit_test,
                              roots.results)

  def with_data(self, path):
    """The same experiment reading its data from ``path`` (``--data``)."""
    flags = tuple((n, v) for n, v in self.flags if n != 'data') + (('data', path),)
    return dataclasses.replace(self, flags=flags)


@dataclasses.dataclass(frozen=True)
class Roots:
  """Where runs, results and exported models live."""
  runs: str = rundir.RUNS_ROOT
  results: str = rundir.RESULTS_ROOT
  pretrained: str = rundir.PRETRAINED_ROOT


def _flag_text(value):
  if isinstance(value, (tuple, list)):
    return ','.join(map(str, value))
  return str(value)


def run(objective, k, latents='50', schedule='paper', **flags):
  """An ``Experiment`` from its objective, k, latents and schedule (and any other flags)."""
  values = {'latents': latents, 'objective': objective, 'k': k, 'schedule': schedule, **flags}
  return Experiment(tuple(values.items()))


def _grid(latents, schedule, **flags):
  """VAE and IWAE with k = 1, 5, 50, k = 1 once (the VAE: the two coincide)."""
  return [run(objective, k, latents, schedule, **flags)
          for k in (1, 5, 50) for objective in ('vae', 'iwae') if not (k == 1 and objective == 'iwae')]


ONE_LAYER, TWO_LAYERS = '50', '100,50'
OMNIGLOT = {'dataset': 'omniglot', 'validation_size': 1345, 'shuffle_seed': 123}

VAE1, IWAE5, IWAE50 = run('vae', 1), run('iwae', 5), run('iwae', 50)

SETS = {
    'table1': _grid(ONE_LAYER, 'paper') + _grid(TWO_LAYERS, 'paper'),
    'table1-omniglot': _grid(ONE_LAYER, 'paper', **OMNIGLOT) + _grid(TWO_LAYERS, 'paper', **OMNIGLOT),
    'table2': [dataclasses.replace(run(objective, k, schedule='continue'), source=source)
               for source in (VAE1, IWAE50) for objective, k in (('iwae', 50), ('vae', 1))],
    'poster': [dataclasses.replace(e, export=False)
               for e in _grid(ONE_LAYER, 'poster') + _grid('2', 'poster')],
    'original': [run('vae', 1, procedure='original'), run('iwae', 5, procedure='original')],
    'seeds': [run('vae', 1, seed=1), run('iwae', 5, seed=1)],
    'smoke': [Experiment((('latents', '3'), ('hidden', '16'), ('objective', objective),
                          ('k', 2), ('schedule', 'poster'), ('epochs', 3),
                          ('limit_train', 200), ('steps_per_execution', 10)),
                         k_nll=10, limit_test=50, export=False)
              for objective in ('vae', 'iwae')],
}
SET_HELP = {
    'table1': "Table 1, MNIST: 1 and 2 layers, VAE and IWAE, k = 1, 5, 50 (3280 epochs)",
    'table1-omniglot': 'Table 1, OMNIGLOT (needs --data=PATH/chardata.mat)',
    'table2': 'Table 2: the 3280-epoch VAE k=1 and IWAE k=50 continued both ways',
    'poster': "the poster's 70-epoch grid, 50 and 2 latents",
    'original': "VAE k=1 and IWAE k=5 under the original code's procedure",
    'seeds': 'VAE k=1 and IWAE k=5 with seed 1',
    'smoke': 'two tiny runs: a check of the queue itself (seconds)',
}

# Every experiment once, the longest and most wanted first: the order in which
# the queue starts them, whatever the sets asked for.
_FIRST = [IWAE50, run('vae', 5), run('vae', 1, TWO_LAYERS), SETS['original'][0], SETS['seeds'][0],
          run('iwae', 5, TWO_LAYERS), run('vae', 50), run('vae', 5, TWO_LAYERS),
          run('iwae', 50, TWO_LAYERS), run('vae', 50, TWO_LAYERS)]
QUEUE = tuple(dict.fromkeys(_FIRST + [e for s in SETS.values() for e in s]))


# The figures' runs in the order the figures draw them.
LATENT2_RUNS = (('vae', 1), ('vae', 5), ('iwae', 5), ('vae', 50), ('iwae', 50))
POSTER_RUNS = (('vae', 1), ('vae', 5), ('vae', 50), ('iwae', 5), ('iwae', 50))


def figure_run(objective, k, latents, epochs=None):
  """A figure's poster-schedule run (``latents`` as ``'2'`` or ``'50'``),
  cut after ``epochs`` if given."""
  flags = {} if epochs is None else {'epochs': epochs}
  return run(objective, k, latents, 'poster', **flags)


def select(names, data=None):
  """The experiments of the sets ``names``, in ``QUEUE`` order.

  Args:
    names: set names (keys of ``SETS``).
    data: ``--data`` for the sets that need a user's file (OMNIGLOT).

  Raises:
    config.ConfigError: an unknown set, or a set that needs ``data``.
  """
  unknown = [n for n in names if n not in SETS]
  if unknown:
    raise config_lib.ConfigError(f'unknown experiment set {", ".join(unknown)}; choose from '
                                 f'{", ".join(SETS)}')
  if 'table1-omniglot' in names and not data:
    raise config_lib.ConfigError('table1-omniglot reads the OMNIGLOT file you supply: '
                                 'pass --data=PATH/chardata.mat')
  wanted = {e for n in names for e in SETS[n]}
  out = [e for e in QUEUE if e in wanted]
  if data:
    out = [e.with_data(data) if dict(e.flags).get('dataset') == 'omniglot' else e for e in out]
  return out

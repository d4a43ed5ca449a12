"""Results: the files ``evaluate.py`` writes, read back, and their algebra.

A result is one JSON file, ``results/<run>/eval-ckpt<E>-K<K>[-n<N>].json``
(``rundir.result_path``), with the checkpoint, K, seeds and data checksum it
came from, and beside it an ``.npz`` of per-image log-likelihood estimates
(``write``). Read back (``read_results``), each is a ``Result``: the JSON as
written, where it was read, and what the tables need of it, named by one key
type, ``Key`` (data set, layers, objective, k, latents, epochs).

Paired differences: two results on the same binarised test images (same
data checksum, evaluation seed, number of images and K) are compared image by
image (``paired_difference``), so that the images' own difficulty cancels:
IWAE against VAE (``paired_differences``, and along the learning curve
``learning_curve_pairs``), a departure from the paper's setup against the run
without it (``departure_differences``, and along the learning curve
``departure_curves``), and Table 2's switched objectives
against the continued ones (``switched_differences``). Each keeps one result
per experiment (key and departures): the largest K, then the first read;
``read_results`` names the runs that measured one experiment twice.
"""

import dataclasses
import glob
import json
import os
import sys
import zipfile
from typing import NamedTuple, Optional

import numpy as np

from iwae_tf import paper
from iwae_tf import rundir


def write(output, result, per_image_values):
  """Writes ``result`` to ``output`` and ``per_image_values`` (name -> ``[N]``)
  beside it, each to a temporary name first, then renamed: a killed write
  leaves no partial file. The JSON, written last, names the ``.npz``.

  Per-image estimates are float32: 0.001-nat resolution at -100 nats.
  """
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  npz = rundir.per_image_path(output)
  with open(npz + '.tmp', 'wb') as f:
    np.savez_compressed(f, **{k: np.asarray(v, np.float32) for k, v in per_image_values.items()})
  os.replace(npz + '.tmp', npz)
  result['per_image'] = os.path.basename(npz)
  rundir.write_json_atomic(output, result)


def _warn(message):
  print(f'warning: {message}', file=sys.stderr)


class Key(NamedTuple):
  """What a result measured; ``epochs`` None for a run's whole learning curve.

  ``objective`` is ``iwae``, ``vae``, or for a run started from another's
  weights ``vae → iwae``; ``latents`` as the tables write them, ``'50'``,
  ``'100-50'``.
  """
  dataset: str
  layers: int
  objective: str
  k: int
  latents: str
  epochs: Optional[int]

  @property
  def curve(self):
    """The key of this run's learning curve (every epoch)."""
    return self._replace(epochs=None)


def curve_order(key):
  """The order of learning curves: by data set, layers, latents, objective, k."""
  return key.dataset, key.layers, key.latents, key.objective, key.k


def name_k(objective):
  """``VAE k=1`` from an objective's configuration (a dict)."""
  return f"{objective['name'].upper()} k={objective['k']}"


@dataclasses.dataclass(frozen=True, eq=False)
class Result:
  """One result file read back.

  Attributes:
    data: its JSON, as ``evaluate.py`` wrote it.
    path: where it was read (its folder names the run); '' for one made in memory.
  """
  data: dict
  path: str = ''

  @property
  def run(self):
    return os.path.basename(os.path.dirname(self.path))

  @property
  def config(self):
    """The run's configuration, as a dict (``TrainConfig.to_dict``)."""
    return self.data['config']

  @property
  def epoch(self):
    return self.data['epoch']

  @property
  def k_nll(self):
    return self.data['k_nll']

  @property
  def nll(self):
    """Test NLL, the mean over images."""
    return self.data['test']['nll']['mean']

  @property
  def stderr(self):
    return self.data['test']['nll']['stderr']

  @property
  def active_units(self):
    """Per stochastic layer, bottom first."""
    return self.data['active_units']

  @property
  def variances(self):
    """Per stochastic layer, each unit's ``Var_x(E_q[u])`` on the test images."""
    return self.data['posterior_mean_variances']

  @property
  def pruned_nll(self):
    """Test NLL with the inactive units pruned, or None if not measured."""
    return self.data.get('test_pruned', {}).get('nll', {}).get('mean')

  @property
  def train_nll(self):
    """NLL on the first training images (``--train_subset``), or None."""
    return self.data['train']['nll']['mean'] if 'train' in self.data else None

  @property
  def source(self):
    """``initialised_from`` (the run whose weights started this one), or None."""
    return self.data.get('initialised_from')

  @property
  def dataset(self):
    return self.config.get('data', {}).get('dataset', 'mnist')

  @property
  def schedule(self):
    return self.config.get('optim', {}).get('schedule')

  @property
  def departures(self):
    """How the run departs from the paper's setup (``paper.departures``)."""
    return paper.departures(self.config)

  @property
  def name_k(self):
    """``IWAE k=50``: the run's own objective and k."""
    return name_k(self.config['objective'])

  @property
  def key(self):
    cfg = self.config
    name = cfg['objective']['name']
    source = (self.source or {}).get('objective', {}).get('name')
    return Key(self.dataset, len(cfg['model']['latents']),
               name if source is None else f'{source} → {name}', cfg['objective']['k'],
               '-'.join(map(str, cfg['model']['latents'])), self.epoch)

  @property
  def experiment(self):
    """``(key, departures)``: what it measured, and how its run departs from
    the paper's setup, as the tables write it ('' for the paper's); the
    pairings and learning curves keep one result per experiment."""
    return self.key, ', '.join(self.departures)

  @property
  def full_test_set(self):
    """Whether it measured the whole test set of its data set."""
    # Results written before ``test_size`` was recorded are MNIST's (10,000).
    return self.data.get('num_test') == self.data.get('test_size', 10000)

  def per_image(self, name='test_log_likelihood'):
    """Its per-image estimates (``[num_test]``), or None if not stored."""
    if 'per_image' not in self.data or not self.path:
      return None
    path = os.path.join(os.path.dirname(self.path), self.data['per_image'])
    if not os.path.exists(path):
      return None
    try:
      with np.load(path) as f:
        return f[name].astype(np.float64) if name in f else None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
      _warn(f'{path}: unreadable per-image values ({type(e).__name__}); pairs with it left out')
      return None


def read(path):
  """The ``Result`` of one file (``ValueError``, ``OSError``, ``KeyError`` or
  ``TypeError`` if it cannot be read or lacks a test NLL)."""
  with open(path) as f:
    r = Result(json.load(f), path)
  r.nll  # pylint: disable=pointless-statement
  return r


def read_results(results_root=rundir.RESULTS_ROOT, warn=_warn):
  """Every full-test-set ``Result`` under ``results_root/<run>/``, in path
  order. A file that cannot be read or parsed (cut short, say) is skipped
  with one line naming it; so, once all are read, is each set of runs that
  measured the same experiment (``shared_experiments``)."""
  read_ = []
  for path in sorted(glob.glob(os.path.join(results_root, '*', 'eval-*.json'))):
    try:
      r = read(path)
    except (OSError, ValueError, KeyError, TypeError) as e:
      warn(f'{path}: unreadable result ({type(e).__name__}: {str(e)[:80]}); left out')
      continue
    if r.full_test_set:
      read_.append(r)
      yield r
  for (curve, deps), (runs, epochs) in shared_experiments(read_).items():
    warn(f"runs {', '.join(runs)} all measured {curve.dataset.upper()} {curve.layers}-layer "
         f"{curve.objective.upper()} k={curve.k}, latents {curve.latents}"
         f"{', ' + deps if deps else ''} at epoch {', '.join(map(str, epochs))}; "
         'the paired and learning-curve tables show one result per epoch '
         '(the largest K, then the first read)')


def shared_experiments(results):
  """Runs that measured the same experiment: the same ``Key`` and departures
  (one run copied under another name, say). The pairings and learning curves
  keep one result per experiment (``_largest_k``), so one such run would
  hide the other.

  Returns:
    ``{(key.curve, departures): (run names, epochs)}`` (``Result.experiment``),
    each sorted, for the epochs that two or more runs measured.
  """
  runs = {}  # (key.curve, departures) -> {epoch: run names}
  for r in results:
    key, deps = r.experiment
    runs.setdefault((key.curve, deps), {}).setdefault(key.epochs, set()).add(r.run)
  out = {}
  for group in sorted(runs, key=lambda g: (curve_order(g[0]), g[1])):
    shared = {e: names for e, names in runs[group].items() if len(names) > 1}
    if shared:
      out[group] = (sorted(set().union(*shared.values())), sorted(shared))
  return out


def _largest_k(results, group):
  """``{group(r): r}``: in each group the result with the largest K; of
  equal K, the first read."""
  best = {}
  for r in results:
    g = group(r)
    if g not in best or r.k_nll > best[g].k_nll:
      best[g] = r
  return best


def collect(results_root=rundir.RESULTS_ROOT):
  """``read_results``, the newest epoch (then the largest K) per run."""
  return newest(read_results(results_root))


def newest(results):
  """Of ``read_results``' results, the newest epoch (then the largest K) per run."""
  best = {}
  for r in results:
    if r.run not in best or (r.epoch, r.k_nll) > (best[r.run].epoch, best[r.run].k_nll):
      best[r.run] = r
  return list(best.values())


def paired_difference(a, b):
  """Test NLL of result ``a`` minus that of ``b``, image by image.

  Returns:
    ``(mean difference, standard error of the per-image differences)``, or
    None unless both hold per-image estimates on the same binarised test
    images (same data checksum, evaluation seed, number of images and K).
  """
  same = ('data_sha256', 'eval_binarization_seed', 'num_test', 'k_nll')
  if any(a.data.get(f) != b.data.get(f) for f in same):
    return None
  la, lb = a.per_image(), b.per_image()
  if la is None or lb is None or la.shape != lb.shape:
    return None
  d = -(la - lb)  # NLL difference per image
  return float(d.mean()), float(d.std() / np.sqrt(len(d)))


def paired_differences(results):
  """IWAE - VAE test NLL at the same layers, k, latents and epochs, on the
  same binarised test images (same data checksum, evaluation seed, K and
  images), from the per-image estimates.

  Only runs with the same departures from the paper are paired (a fixed-
  binarisation IWAE is not set against a dynamic VAE).

  Returns:
    ``{(the IWAE's key, departures): (mean difference, standard error)}``,
    departures as in the table ('' for the paper's setup); the standard
    error is that of the per-image differences, far smaller than either
    model's own, since the images' difficulty cancels.
  """
  one = _largest_k(results, lambda r: r.experiment)
  out = {}
  for (key, deps), a in one.items():
    b = one.get((key._replace(objective='vae'), deps))
    diff = (paired_difference(a, b)
            if key.objective == 'iwae' and key.k > 1 and b is not None else None)
    if diff is not None:
      out[(key, deps)] = diff
  return out


def departure_differences(results):
  """Each run that departs from the paper's setup (``Result.departures``)
  against the run with the same key that does not, on the same test images.

  Returns:
    ``{(key, departures): (run, baseline run, mean NLL difference run -
    baseline, paired standard error)}`` for the pairs with per-image
    estimates (see ``paired_difference``).
  """
  one = _largest_k(results, lambda r: r.experiment)
  out = {}
  for (key, deps), r in one.items():
    base = one.get((key, ''))
    diff = paired_difference(r, base) if deps and base is not None else None
    if diff is not None:
      out[(key, deps)] = (r, base) + diff
  return out


def departure_curves(results):
  """``departure_differences`` along the learning curve: each paper-schedule
  run that departs from the paper's setup against the run with the same key
  that does not, at every epoch both were measured (the largest K of each).

  Returns:
    ``{(key.curve, departures): {epoch: (run, mean NLL difference run -
    baseline, paired standard error)}}``, in ``curve_order``, then by
    departures; only pairs with a difference at some epoch.
  """
  out = {}
  differences = departure_differences(
      [r for r in results if r.schedule == 'paper' and not r.source])
  order = lambda item: (curve_order(item[0][0]), item[0][1], item[0][0].epochs)  # noqa: E731
  for (key, deps), (r, _, diff, se) in sorted(differences.items(), key=order):
    out.setdefault((key.curve, deps), {})[key.epochs] = (r, diff, se)
  return out


def switched_differences(results):
  """Table 2's comparison: runs started from the same source checkpoint and
  trained for the same epochs, one with another objective or k ("switched"),
  one with the source's own ("continued"), image by image.

  Returns:
    ``{(the switched run's key, source run and epoch): (switched, continued,
    mean NLL difference switched - continued, paired standard error)}``,
    the objectives as ``IWAE k=50``.
  """
  groups = {}
  for r in results:
    if r.source:
      name = os.path.basename(os.path.normpath(r.source['run_dir']))
      groups.setdefault((r.dataset, f"{name} (epoch {r.source['epoch']})", r.epoch), []).append(r)
  out = {}
  for (_, source, _), runs in groups.items():
    own = [r.name_k == name_k(r.source['objective']) for r in runs]
    for a, a_own in zip(runs, own):
      for b, b_own in zip(runs, own):
        diff = None if a_own or not b_own else paired_difference(a, b)
        if diff is not None:
          out[(a.key, source)] = (a.name_k, b.name_k) + diff
  return out


def learning_curves(results):
  """The ``--schedule=paper`` runs' measurements, epoch by epoch.

  Args:
    results: ``read_results``' (every epoch measured). Runs that depart from
      the paper's setup or start from another run's weights are left out.

  Returns:
    ``{key.curve: {epoch: result}}``, the largest K where an epoch was
    measured more than once.
  """
  curves = {}
  one = _largest_k([r for r in results if r.schedule == 'paper' and not r.departures
                    and not r.source], lambda r: r.key)
  for key, r in one.items():
    curves.setdefault(key.curve, {})[key.epochs] = r
  return curves


def learning_curve_pairs(curves):
  """IWAE k against the k = 1 baseline (the paper's k = 1 row) and against
  the VAE with the same k samples, image by image (``paired_difference``),
  at every epoch both runs were measured.

  Returns:
    ``{(the IWAE's curve key, VAE's k): {epoch: (mean difference IWAE - VAE,
    paired standard error)}}``, in ``curve_order``, only pairs with a
    difference at some epoch.
  """
  out = {}
  for key in sorted(curves, key=curve_order):
    iwae = curves[key]
    for vae_k in sorted({1, key.k}) if key.objective == 'iwae' and key.k > 1 else ():
      vae = curves.get(key._replace(objective='vae', k=vae_k), {})
      paired = {e: paired_difference(iwae[e], vae[e]) for e in sorted(set(iwae) & set(vae))}
      paired = {e: d for e, d in paired.items() if d is not None}
      if paired:
        out[(key, vae_k)] = paired
  return out

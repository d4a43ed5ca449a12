"""Measuring a run the way the paper did.

``evaluate_run`` restores a run's checkpoint and measures, on the test set
(binarised once with the run's recorded evaluation seed) and optionally on a
training subset:

* the log-likelihood estimate ``log (1/K) sum_i w_i`` with ``K = 5000``
  importance samples (Burda et al. 2016, section 5), reported as NLL;
* the bounds ``L_1``, ``L_5``, ``L_50``;
* active units per stochastic layer (``Cov_x(E_q[u]) > 1e-2``);
* optionally, the NLL again after pruning the inactive units, as the
  original code did (``IWAEModel.prune``).

Results are written as JSON in ``results/<run>/`` (``rundir.result_path``),
with the checkpoint, K, seeds and data checksum they came from, and the
per-image estimates beside them (``results.write``); an existing result file
is never overwritten unless asked. ``evaluate_milestones`` measures every
milestone of a run, once each.
"""

import os
import time

import numpy as np

from iwae_tf import checkpoints
from iwae_tf import cli
from iwae_tf import datasets as data_lib
from iwae_tf import errors
from iwae_tf import memory
from iwae_tf import metrics
from iwae_tf import paper
from iwae_tf import results
from iwae_tf import rundir


class EvaluationError(errors.IWAEError):
  """A run or checkpoint that cannot be evaluated as asked."""


def _summary(values):
  return {'mean': float(np.mean(values)), 'stderr': float(np.std(values) / np.sqrt(len(values)))}


def eta_reporter(say, label, every=30.0, clock=time.monotonic):
  """A ``progress(done, total)`` callback that says, at most every ``every``
  seconds, how many images are done and how long the rest should take."""
  start = clock()
  last = [start]

  def report(done, total):
    now = clock()
    if now - last[0] < every or done >= total:
      return
    last[0] = now
    left = (now - start) / done * (total - done)
    say(f'{label}: {done}/{total} images, about {_minutes(left)} left')

  return report


def _stoppable(report=None):
  """A ``progress(done, total)`` callback for a measurement's loop that
  first raises again a stop signal whose exception library code swallowed
  (``cli.raise_if_stopped``), so that a stopped measurement ends within one
  batch rather than at its end, then calls ``report`` (if given)."""

  def after_batch(done, total):
    cli.raise_if_stopped()
    if report is not None:
      report(done, total)

  return after_batch


def _minutes(seconds):
  return f'{seconds:.0f} s' if seconds < 90 else f'{seconds / 60:.0f} min'


def measure(model, x, ks, k_nll, seed, estimator, progress=None):
  """Bounds and NLL estimate on binarised images ``x`` (``progress``: see
  ``eta_reporter``, for the NLL's long loop).

  Returns:
    ``(summary, ll)``: a dict with ``L_k`` for each k (mean and standard
    error over images) and ``nll`` (= -mean log-likelihood estimate with
    ``k_nll`` samples), and the per-image estimates ``ll`` ``[len(x)]``.
  """
  out = {}
  for k in sorted(set(ks)):
    out[f'L_{k}'] = _summary(estimator.log_likelihood(x, k, seed))
  ll = estimator.log_likelihood(x, k_nll, seed, progress)
  out['nll'] = _nll(ll, k_nll)
  return out, ll


def _nll(ll, k_nll):
  return {'mean': float(-ll.mean()), 'stderr': float(ll.std() / np.sqrt(len(ll))),
          'k': int(k_nll)}


def _summary_of(result_json):
  """`` (test NLL 86.37 ± 0.23, K = 5000)`` of a result file; empty if unreadable."""
  try:
    r = results.read(result_json)
    return f' (test NLL {r.nll:.2f} ± {r.stderr:.2f}, K = {r.k_nll})'
  except (OSError, ValueError, KeyError, TypeError):
    return ''


def evaluate_run(run_dir, checkpoint=None, k_nll=5000, ks=(1, 5, 50), seed=0,
                 train_subset=0, prune=False, batch_size=100, chunk=100,
                 output=None, overwrite=False, limit_test=None, progress=print,
                 results_root=rundir.RESULTS_ROOT):
  """Measures a run; writes and returns the results.

  Args:
    run_dir: run directory.
    checkpoint: see ``checkpoints.restore``.
    k_nll: importance samples of the NLL estimate.
    ks: bounds to report.
    seed: seed of the importance samples.
    train_subset: also measure the first N training images (0: no), binarised
      with the evaluation seed; a fixed-binarisation run's are measured as it
      was trained on them.
    prune: also measure the NLL after pruning inactive units.
    batch_size, chunk: images per compiled call and samples per chunk.
    output: result path (default ``results/<run>/eval-ckpt<epoch>-K<K>.json``,
      ``rundir.result_path``); the per-image estimates go beside it (``.npz``).
    overwrite: replace an existing result file.
    limit_test: measure only the first N test images (quick checks).
    results_root: where results live when ``output`` is not given.

  Returns:
    The ``results.Result`` written, read back from its file.
  """
  for name, value, least in [('k_nll', k_nll, 1), ('batch_size', batch_size, 1),
                             ('chunk', chunk, 1), ('train_subset', train_subset, 0),
                             ('limit_test', 1 if limit_test is None else limit_test, 1)]:
    if value < least:
      raise EvaluationError(f'--{name} must be >= {least}, got {value}')
  if any(k < 1 for k in ks):
    raise EvaluationError(f'--ks must be >= 1, got {",".join(map(str, ks))}')
  if not os.path.isdir(run_dir):
    raise EvaluationError(f'{run_dir}: no such run directory')
  config, model, path, epoch = checkpoints.restore(run_dir, checkpoint)
  if not memory.device_has_own_memory():
    memory.check_fits(min(chunk, k_nll) * batch_size, config.model,
                      f'--chunk={chunk} at --batch_size={batch_size}', ('chunk', batch_size))
  output = output or rundir.result_path(run_dir, epoch, k_nll, limit_test, results_root)
  if os.path.exists(output) and not overwrite:
    raise EvaluationError(f'{output}: exists{_summary_of(output)}; to measure again, pass '
                          '--results_root=DIR (another place) or --overwrite (replaces it)')
  splits = data_lib.make_splits(config.data)
  env = rundir.read_environment(run_dir)
  trained_on = env.get('data_sha256')
  if trained_on and trained_on != splits.sha256:
    raise EvaluationError(f'{splits.source}: data checksum differs from the one {run_dir} '
                          'was trained on')
  x_test = data_lib.binarize_fixed(splits.x_test[:limit_test], config.data.eval_seed)
  estimator = metrics.Estimator(model, batch_size=batch_size, chunk=chunk)
  start = time.time()
  progress(f'{run_dir}: epoch {epoch}, {len(x_test)} test images, K={k_nll}')
  result = {
      'run_dir': os.path.normpath(run_dir), 'checkpoint': path, 'epoch': epoch,
      'config': config.to_dict(), 'k_nll': int(k_nll), 'seed': int(seed),
      'eval_binarization_seed': config.data.eval_seed, 'data_sha256': splits.sha256,
      'num_test': len(x_test), 'test_size': len(splits.x_test),
  }
  if 'initialised_from' in env:
    result['initialised_from'] = env['initialised_from']
  result['test'], per_image = measure(model, x_test, ks, k_nll, seed, estimator,
                                      _stoppable(eta_reporter(progress, f'  test NLL, K={k_nll}')))
  per_image = {'test_log_likelihood': per_image}
  variances = metrics.posterior_mean_variances(model, x_test, seed)
  result['active_units'] = metrics.active_units(variances)
  result['posterior_mean_variances'] = [v.tolist() for v in variances]
  # As the original code counted them: on the first 500 training images.
  x_first = data_lib.binarize_fixed(splits.x_train[:paper.ORIGINAL_ACTIVE_UNITS_IMAGES],
                                    config.data.eval_seed)
  result['active_units_first_train'] = metrics.active_units(
      metrics.posterior_mean_variances(model, x_first, seed))
  result['active_units_first_train_images'] = len(x_first)
  if train_subset:
    x_train = data_lib.binarize_fixed(splits.x_train[:train_subset], config.data.eval_seed)
    result['train'], _ = measure(model, x_train, ks, k_nll, seed, estimator, _stoppable())
    result['num_train'] = len(x_train)
  if prune:
    dead = [np.flatnonzero(v <= metrics.ACTIVE_THRESHOLD).tolist() for v in variances]
    model.prune(dead)
    result['pruned_units'] = dead
    pruned = metrics.Estimator(model, batch_size=batch_size, chunk=chunk)
    ll = pruned.log_likelihood(x_test, k_nll, seed, _stoppable())
    result['test_pruned'] = {'nll': _nll(ll, k_nll)}
    per_image['test_pruned_log_likelihood'] = ll
  result['seconds'] = time.time() - start
  # Per-image estimates make paired comparisons of runs on the same test
  # images possible (``results.paired_difference``).
  results.write(output, result, per_image)
  progress(f"NLL {result['test']['nll']['mean']:.2f} (K={k_nll}), "
           f"active units {result['active_units']}, {result['seconds']:.0f} s -> {output}")
  return results.read(output)


def evaluate_milestones(run_dir, k_nll=5000, limit_test=None, overwrite=False,
                        results_root=rundir.RESULTS_ROOT, progress=print, **kwargs):
  """``evaluate_run`` at every milestone checkpoint, then at the latest one,
  skipping epochs already measured with the same K and test images: the
  learning curve of a run, safe to run while the run goes on (the lists are
  read again after each measurement, since a running training adds
  milestones and rolls its latest checkpoints over).

  Returns:
    The ``results.Result`` of each epoch, by epoch (those measured earlier
    read back).
  """
  out, latest_done = {}, False

  def next_epoch():
    nonlocal latest_done
    saved = rundir.saved_checkpoints(run_dir)
    if not saved:
      raise EvaluationError(f'{run_dir}: no checkpoint yet (has train.py run an epoch?)')
    todo = sorted({rundir.epoch_of(p) for p in saved
                   if os.path.dirname(p) == rundir.milestone_dir(run_dir)} - set(out))
    if todo:
      return todo[0]
    if latest_done:  # the latest once, as it is when the milestones are done
      return None
    latest_done = True
    latest = rundir.epoch_of(saved[0])
    return None if latest in out else latest

  while (epoch := next_epoch()) is not None:
    path = rundir.result_path(run_dir, epoch, k_nll, limit_test, results_root)
    if os.path.exists(path) and not overwrite:
      progress(f'{path}: measured already')
      out[epoch] = results.read(path)
      continue
    out[epoch] = evaluate_run(run_dir, checkpoint=epoch, k_nll=k_nll, limit_test=limit_test,
                              overwrite=overwrite, results_root=results_root,
                              progress=progress, **kwargs)
  return out

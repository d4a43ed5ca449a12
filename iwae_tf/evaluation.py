"""Measuring a run the way the paper did, and the results table.

``evaluate_run`` restores a run's checkpoint and measures, on the test set
(binarised once with the run's recorded evaluation seed) and optionally on a
training subset:

* the log-likelihood estimate ``log (1/K) sum_i w_i`` with ``K = 5000``
  importance samples (Burda et al. 2016, section 5), reported as NLL;
* the bounds ``L_1``, ``L_5``, ``L_50``;
* active units per stochastic layer (``Cov_x(E_q[u]) > 1e-2``);
* optionally, the NLL again after pruning the inactive units, as the
  original code did. Pruning unit ``u`` of layer ``l`` sets both its
  posterior and its prior (or conditional prior) to ``N(0, 1)`` and zeroes
  every weight that reads it, so its log-weight terms cancel exactly and it
  influences nothing: the model then has the same likelihood as one without
  the unit.

Results are written as JSON in ``results/<run>/`` (``rundir.result_path``),
with the checkpoint, K, seeds and data checksum they came from, and the
per-image estimates beside them (``.npz``); an existing result file is never
overwritten unless asked.
"""

import glob
import json
import os
import shutil
import sys
import time
import zipfile

import numpy as np
import tensorflow as tf

from iwae_tf import config as config_lib
from iwae_tf import data as data_lib
from iwae_tf import errors
from iwae_tf import memory
from iwae_tf import metrics
from iwae_tf import rundir
from iwae_tf import training

# The poster's re-implementation (1 stochastic layer, 50 latents, 70 epochs), MNIST:
# {(objective, latents, k): ...}, latents as in ``paper_nll``.
POSTER = {('iwae', '50', 5): {'nll': 99.70, 'active_units': 14}}
# The original code counted active units on the first 500 training images.
ORIGINAL_ACTIVE_UNITS_IMAGES = 500


class EvaluationError(errors.IWAEError):
  """A run or checkpoint that cannot be evaluated as asked."""


def restore(run_dir, checkpoint=None):
  """Rebuilds a run's model and restores a checkpoint.

  Args:
    run_dir: a directory written by ``train.py`` (or a pretrained model's).
    checkpoint: None for the latest, an epoch number (a rolling checkpoint,
      else a milestone), or a checkpoint path.

  Returns:
    ``(config, model, checkpoint_path, epoch)``.
  """
  config = rundir.read_config(run_dir)
  model = training.build_model(config)
  ckpt, epoch = rundir.make_checkpoint(model)
  if checkpoint is None:
    saved = rundir.saved_checkpoints(run_dir)
    if not saved:
      raise EvaluationError(f'{run_dir}: no checkpoint yet (has train.py run an epoch?)')
    path = saved[0]
  elif str(checkpoint).isdigit():
    path = rundir.checkpoint_path(run_dir, int(checkpoint))
  else:
    path = str(checkpoint)
  if not tf.io.gfile.exists(path + '.index'):
    available = [rundir.epoch_of(p) for p in rundir.saved_checkpoints(run_dir)]
    raise EvaluationError(f'{path}: no such checkpoint (epochs available: '
                          f'{sorted(set(available)) or "none"})')
  rundir.verify_checkpoint(path)
  try:
    ckpt.restore(path).expect_partial().assert_existing_objects_matched()
  except (AssertionError, ValueError, tf.errors.OpError) as e:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise EvaluationError(f'{path}: does not match the architecture in '
                          f'{run_dir}/config.json ({first})') from None
  return config, model, path, int(epoch.numpy())


def export_pretrained(run_dir, out_dir, checkpoint=None, results_root=rundir.RESULTS_ROOT):
  """Writes a run's weights, model only, as a run directory of their own.

  ``out_dir`` gets the run's ``config.json`` (with ``exported_from``) and
  ``environment.json``, ``checkpoints/ckpt-<epoch>`` with the model's
  weights only (no optimizer or generator state): what ``evaluate.py``, the
  figure script and ``iwae_tf.pretrained`` need, 1.7 MB for the paper's
  1-layer model; and, when the run was measured at that epoch (K = 5000, the
  full test set), ``measured.json`` with that test NLL. The folder is written
  under a temporary name and renamed when complete; an existing export is
  refused (nothing is overwritten).

  Returns:
    The written checkpoint's prefix.
  """
  config, model, path, epoch = restore(run_dir, checkpoint)
  if os.path.exists(out_dir) and os.listdir(out_dir):
    raise EvaluationError(f'{out_dir}: exists and is not empty; choose another directory')
  tmp = os.path.join(os.path.dirname(os.path.abspath(out_dir)),
                     f'.tmp-{os.path.basename(os.path.normpath(out_dir))}')
  shutil.rmtree(tmp, ignore_errors=True)  # a killed export's leftovers
  os.makedirs(tmp)
  cfg = config.to_dict()
  cfg['run_dir'] = out_dir
  rundir.write_json_atomic(os.path.join(tmp, 'config.json'), cfg)
  env_path = os.path.join(run_dir, 'environment.json')
  if os.path.exists(env_path):
    shutil.copyfile(env_path, os.path.join(tmp, 'environment.json'))
  rundir.record_environment(tmp, exported_from={
      'run_dir': os.path.normpath(run_dir), 'checkpoint': path, 'epoch': epoch})
  result = rundir.result_path(run_dir, epoch, 5000, results_root=results_root)
  if os.path.exists(result):
    write_measured(tmp, result)
  weights_only, epoch_var = rundir.make_checkpoint(model)
  epoch_var.assign(epoch)
  prefix = rundir.checkpoint_manager(weights_only, tmp).save(checkpoint_number=epoch)
  # The manager's state file names the checkpoint relative to its folder, so
  # the folder can move.
  if os.path.isdir(out_dir):
    os.rmdir(out_dir)  # empty (checked above)
  os.replace(tmp, out_dir)
  return os.path.join(out_dir, os.path.relpath(prefix, tmp))


def write_measured(out_dir, result_json):
  """``out_dir/measured.json``: the test NLL of a result file, for ``iwae_tf.pretrained``."""
  with open(result_json) as f:
    r = json.load(f)
  if not full_test_set(r):
    raise EvaluationError(f'{result_json}: not a full-test-set result')
  rundir.write_json_atomic(os.path.join(out_dir, 'measured.json'), {
      'test_nll': round(r['test']['nll']['mean'], 2),
      'stderr': round(r['test']['nll']['stderr'], 2), 'k_nll': r['k_nll'], 'epoch': r['epoch'],
      'active_units': r['active_units'], 'result': os.path.basename(result_json)})


def _input_layers(stochastic_layer):
  """The Dense layers of a stochastic layer that read its input: the first
  hidden layer, or without hidden layers every distribution head."""
  if stochastic_layer.mlp.hidden:
    return [stochastic_layer.mlp.hidden[0]]
  heads = ('logits',) if hasattr(stochastic_layer, 'logits') else ('loc', 'log_scale')
  return [getattr(stochastic_layer, name) for name in heads]


def prune_inactive(model, variances, threshold=metrics.ACTIVE_THRESHOLD):
  """Removes inactive units from ``model`` in place (see module docstring).

  Returns:
    list, per layer, of the pruned unit indices.
  """
  pruned = []
  num_layers = len(model.encoders)
  for l, var in enumerate(variances):
    dead = np.flatnonzero(var <= threshold)
    pruned.append(dead.tolist())
    if not len(dead):
      continue
    # q(h_l|.) := N(0, 1) for these units, and p(h_l|h_{l+1}) too (the top
    # layer's prior already is).
    heads = [model.encoders[l].loc, model.encoders[l].log_scale]
    if l + 1 < num_layers:
      heads += [model.decoders[l + 1].loc, model.decoders[l + 1].log_scale]
    for head in heads:
      k, b = head.kernel.numpy(), head.bias.numpy()
      k[:, dead], b[dead] = 0.0, 0.0
      head.kernel.assign(k)
      head.bias.assign(b)
    # Nothing reads them: the decoder below and the encoder above.
    readers = _input_layers(model.decoders[l])
    if l + 1 < num_layers:
      readers += _input_layers(model.encoders[l + 1])
    for layer in readers:
      k = layer.kernel.numpy()
      k[dead, :] = 0.0
      layer.kernel.assign(k)
  return pruned


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
    with open(result_json) as f:
      r = json.load(f)
    nll = r['test']['nll']
    return f" (test NLL {nll['mean']:.2f} ± {nll['stderr']:.2f}, K = {r['k_nll']})"
  except (OSError, ValueError, KeyError, TypeError):
    return ''


def evaluate_run(run_dir, checkpoint=None, k_nll=5000, ks=(1, 5, 50), seed=0,
                 train_subset=0, prune=False, batch_size=100, chunk=100,
                 output=None, overwrite=False, limit_test=None, progress=print,
                 results_root=rundir.RESULTS_ROOT):
  """Measures a run; writes and returns the results.

  Args:
    run_dir: run directory.
    checkpoint: see ``restore``.
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
    The result dict.
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
  config, model, path, epoch = restore(run_dir, checkpoint)
  if not memory.device_has_own_memory():
    memory.check_fits(min(chunk, k_nll) * batch_size, config.model,
                      f'--chunk={chunk} at --batch_size={batch_size}', ('chunk', batch_size))
  output = output or rundir.result_path(run_dir, epoch, k_nll, limit_test, results_root)
  if os.path.exists(output) and not overwrite:
    raise EvaluationError(f'{output}: exists{_summary_of(output)}; to measure again, pass '
                          '--results_root=DIR (another place) or --overwrite (replaces it)')
  splits = data_lib.make_splits(config.data)
  env_path = os.path.join(run_dir, 'environment.json')
  env = {}
  if os.path.exists(env_path):
    with open(env_path) as f:
      env = json.load(f)
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
                                      eta_reporter(progress, f'  test NLL, K={k_nll}'))
  per_image = {'test_log_likelihood': per_image}
  variances = metrics.posterior_mean_variances(model, x_test, seed)
  result['active_units'] = metrics.active_units(variances)
  result['posterior_mean_variances'] = [v.tolist() for v in variances]
  # As the original code counted them: on the first 500 training images.
  x_first = data_lib.binarize_fixed(splits.x_train[:ORIGINAL_ACTIVE_UNITS_IMAGES],
                                    config.data.eval_seed)
  result['active_units_first_train'] = metrics.active_units(
      metrics.posterior_mean_variances(model, x_first, seed))
  result['active_units_first_train_images'] = len(x_first)
  if train_subset:
    x_train = data_lib.binarize_fixed(splits.x_train[:train_subset], config.data.eval_seed)
    result['train'], _ = measure(model, x_train, ks, k_nll, seed, estimator)
    result['num_train'] = len(x_train)
  if prune:
    result['pruned_units'] = prune_inactive(model, variances)
    pruned = metrics.Estimator(model, batch_size=batch_size, chunk=chunk)
    ll = pruned.log_likelihood(x_test, k_nll, seed)
    result['test_pruned'] = {'nll': _nll(ll, k_nll)}
    per_image['test_pruned_log_likelihood'] = ll
  result['seconds'] = time.time() - start
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  # Per-image estimates (float32: 0.001-nat resolution at -100 nats) make
  # paired comparisons of runs on the same test images possible.
  npz = rundir.per_image_path(output)
  with open(npz + '.tmp', 'wb') as f:
    np.savez_compressed(f, **{k: np.asarray(v, np.float32) for k, v in per_image.items()})
  os.replace(npz + '.tmp', npz)
  result['per_image'] = os.path.basename(npz)
  rundir.write_json_atomic(output, result)
  progress(f"NLL {result['test']['nll']['mean']:.2f} (K={k_nll}), "
           f"active units {result['active_units']}, {result['seconds']:.0f} s -> {output}")
  return result


def evaluate_milestones(run_dir, k_nll=5000, limit_test=None, overwrite=False,
                        results_root=rundir.RESULTS_ROOT, progress=print, **kwargs):
  """``evaluate_run`` at every milestone checkpoint, then at the latest one,
  skipping epochs already measured with the same K and test images: the
  learning curve of a run, safe to run while the run goes on (the lists are
  read again after each measurement, since a running training adds
  milestones and rolls its latest checkpoints over).

  Returns:
    The results, by epoch (those measured earlier read back).
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
      with open(path) as f:
        out[epoch] = json.load(f)
      continue
    out[epoch] = evaluate_run(run_dir, checkpoint=epoch, k_nll=k_nll, limit_test=limit_test,
                              overwrite=overwrite, results_root=results_root,
                              progress=progress, **kwargs)
  return out


# ------------------------------------------------------------------ the table
def full_test_set(r):
  """Whether a result measured the whole test set of its data set."""
  # Results written before ``test_size`` was recorded are MNIST's (10,000).
  return r.get('num_test') == r.get('test_size', 10000)


def _warn(message):
  print(f'warning: {message}', file=sys.stderr)


def read_results(results_root=rundir.RESULTS_ROOT, warn=_warn):
  """Every full-test-set result under ``results_root/<run>/``; each gets
  ``run`` (its folder's name) and ``path`` (of its JSON file). A file that
  cannot be read or parsed (cut short, say) is skipped with one line naming it."""
  for path in sorted(glob.glob(os.path.join(results_root, '*', 'eval-*.json'))):
    try:
      with open(path) as f:
        r = json.load(f)
      r['test']['nll']['mean']  # pylint: disable=pointless-statement
    except (OSError, ValueError, KeyError, TypeError) as e:
      warn(f'{path}: unreadable result ({type(e).__name__}: {str(e)[:80]}); left out')
      continue
    if full_test_set(r):
      r['run'], r['path'] = os.path.basename(os.path.dirname(path)), path
      yield r


def collect(results_root=rundir.RESULTS_ROOT):
  """``read_results``, the newest epoch (then the largest K) per run."""
  return newest(read_results(results_root))


def newest(results):
  """Of ``read_results``' results, the newest epoch (then the largest K) per run."""
  best = {}
  for r in results:
    key = r['run']
    if key not in best or (r['epoch'], r['k_nll']) > (best[key]['epoch'], best[key]['k_nll']):
      best[key] = r
  return list(best.values())


def departures(cfg):
  """How a run's configuration departs from the paper's setup (Burda et al.
  2016, section 5 and appendix), as short labels; empty for the paper's."""
  optim, data, obj = cfg.get('optim', {}), cfg.get('data', {}), cfg.get('objective', {})
  procedure = cfg.get('procedure', 'paper')
  # The original procedure's own defaults are part of it, not departures of their own.
  own = config_lib.ORIGINAL_DEFAULTS if procedure == 'original' else {}
  paper = {'learning_rate': 1e-3, 'beta1': own.get('beta1', 0.9), 'beta2': 0.999,
           'epsilon': 1e-4, 'batch_size': 20}
  out = [] if procedure == 'paper' else [f'{procedure} procedure']
  out += [f'{name}={optim[name]:g}' for name, value in paper.items()
          if name in optim and optim[name] != value]
  if obj.get('estimator', 'iwae') != 'iwae':
    out.append(f"estimator={obj['estimator']}")
  if cfg.get('seed'):  # set against seed 0 like a departure: the seed-to-seed spread
    out.append(f"seed={cfg['seed']}")
  if data.get('validation_size', 0) != own.get('validation_size', 0):
    out.append(f"{data['validation_size']} held out")
  if data.get('limit_train'):
    out.append(f"{data['limit_train']} training images")
  if data.get('binarization', 'dynamic') != 'dynamic':
    out.append(f"{data['binarization']} binarisation (seed {data.get('train_binarization_seed', 0)})")
  hidden = cfg.get('model', {}).get('hidden')
  if hidden is not None and [list(h) for h in hidden] != [
      list(h) for h in config_lib.default_hidden(cfg['model']['latents'])]:
    out.append('hidden=' + ';'.join(','.join(map(str, h)) for h in cfg['model']['hidden']))
  return out


def _dataset(r):
  return r['config'].get('data', {}).get('dataset', 'mnist')


def _objective(r):
  """``iwae``, ``vae``, or for a run started from another, ``vae → iwae``."""
  name = r['config']['objective']['name']
  source = r.get('initialised_from', {}).get('objective', {}).get('name')
  return name if source is None else f'{source} → {name}'


def _name_k(objective):
  """``VAE k=1`` from an objective's configuration (a dict)."""
  return f"{objective['name'].upper()} k={objective['k']}"


def _labels(r):
  """The table's objective and epochs cells: ``VAE k=1 → IWAE`` and ``70 + 20``
  for a run started from another run's weights."""
  obj, epoch = r['config']['objective']['name'].upper(), str(r['epoch'])
  source = r.get('initialised_from')
  if source:
    obj = f"{_name_k(source['objective'])} → {obj}"
    epoch = f"{source['epoch']} + {epoch}"
  return obj, epoch


def result_key(r):
  """``(data set, layers, objective, k, latents, epochs)`` of a result."""
  cfg = r['config']
  return (_dataset(r), len(cfg['model']['latents']), _objective(r), cfg['objective']['k'],
          '-'.join(map(str, cfg['model']['latents'])), r['epoch'])


def paper_nll(dataset, objective, latents, k):
  """The paper's Table 1 test NLL, or None where it has none (or none
  confirmed): another architecture (``latents`` as ``result_key`` writes
  them, ``'50'``, ``'100-50'``), objective or k."""
  return data_lib.DATASETS[dataset].paper_nll.get((objective, latents), {}).get(k)


def paper_difference(dataset, latents, k, vae_k):
  """The paper's IWAE k minus VAE vae_k test NLL, or None where it lacks either."""
  iwae, vae = paper_nll(dataset, 'iwae', latents, k), paper_nll(dataset, 'vae', latents, vae_k)
  return None if iwae is None or vae is None else iwae - vae


def _cell(value, spec='.2f'):
  """A table cell: ``value`` formatted, or ``–`` for None."""
  return '–' if value is None else format(value, spec)


def table(results):
  """Markdown table laid out like the paper's Table 1, with its numbers beside
  ours, then the paired blocks: IWAE - VAE (``paired_differences``), each
  departure from the paper's setup against the run without it
  (``departure_differences``), and Table 2's switched - continued runs
  (``switched_differences``)."""
  rows = []
  for r in results:
    cfg = r['config']
    dataset, layers, obj, k, lat, ep = result_key(r)
    paper = paper_nll(dataset, obj, lat, k)
    poster = POSTER.get((obj, lat, k), {}) if dataset == 'mnist' else {}
    rows.append(((dataset, layers, obj, k, lat, ep), dataset, layers, *_labels(r), k, lat,
                 r['test']['nll']['mean'], r['test']['nll']['stderr'], r['k_nll'],
                 '/'.join(map(str, r['active_units'])),  # per stochastic layer, h1 first
                 r.get('test_pruned', {}).get('nll', {}).get('mean'),
                 paper, poster.get('nll'), poster.get('active_units'),
                 ', '.join(departures(cfg)) or '–'))
  rows.sort(key=lambda row: row[0])
  lines = ['| data | layers | objective | k | latents | epochs | test NLL (ours) | K '
           '| active units | NLL pruned | paper NLL (3280 ep.) | poster NLL (70 ep.) '
           '| poster active units | departures from the paper |',
           '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|']
  for (_, dataset, layers, obj, ep, k, lat, nll, se, kn, au, pr, paper, pn, pa, dep) in rows:
    lines.append(f'| {dataset.upper()} | {layers} | {obj} | {k} | {lat} | {ep} '
                 f'| {nll:.2f} ± {se:.2f} | {kn} | {au} | {_cell(pr)} | {_cell(paper)} | {_cell(pn)} '
                 f'| {_cell(pa, "d")} | {dep} |')
  pairs = paired_differences(results)
  if pairs:
    lines += ['', 'Paired differences on the same test images (IWAE − VAE, test NLL; '
              'negative: IWAE ahead; ± the standard error of the per-image differences):', '',
              '| data | layers | k | latents | epochs | IWAE − VAE | paper | departures |',
              '|---|---|---|---|---|---|---|---|']
    for (dataset, layers, k, lat, ep, deps), (diff, se) in sorted(pairs.items()):
      ref = _cell(paper_difference(dataset, lat, k, k), '+.2f')
      lines.append(f'| {dataset.upper()} | {layers} | {k} | {lat} | {ep} '
                   f'| {diff:+.2f} ± {se:.2f} | {ref} | {deps or "–"} |')
  departed = departure_differences(results)
  if departed:
    lines += ['', 'Departures from the paper\'s setup, against the same run without them, '
              'on the same test images; train − test: NLL on the first training images '
              '(`evaluate.py --train_subset`; for a fixed-binarisation run, the very '
              'binarisation it trained on) minus test NLL:', '',
              '| data | layers | objective | k | latents | epochs | departures '
              '| NLL − paper setup\'s | train − test | paper setup\'s train − test |',
              '|---|---|---|---|---|---|---|---|---|---|']
    gap = lambda r: ('–' if 'train' not in r else  # noqa: E731
                     f"{r['train']['nll']['mean'] - r['test']['nll']['mean']:+.2f}")
    for (dataset, layers, obj, k, lat, ep, deps), (r, base, diff, se) in sorted(
        departed.items(), key=lambda item: item[0]):
      lines.append(f'| {dataset.upper()} | {layers} | {obj.upper()} | {k} | {lat} | {ep} '
                   f'| {deps} | {diff:+.2f} ± {se:.2f} | {gap(r)} | {gap(base)} |')
  switched = switched_differences(results)
  if switched:
    lines += ['', 'Switching objectives (the paper\'s Table 2): a run continued with another '
              'objective minus the same source continued with its own, for the same epochs, '
              'on the same test images:', '',
              '| data | source | epochs | switched to | continued as | switched − continued |',
              '|---|---|---|---|---|---|']
    for (dataset, source, ep, a), (b, diff, se) in sorted(switched.items()):
      lines.append(f'| {dataset.upper()} | {source} | {ep} | {a} | {b} '
                   f'| {diff:+.2f} ± {se:.2f} |')
  return '\n'.join(lines) + '\n'


def learning_curves(results):
  """The ``--schedule=paper`` runs' measurements, epoch by epoch.

  Args:
    results: ``read_results``' (every epoch measured). Runs that depart from
      the paper's setup or start from another run's weights are left out.

  Returns:
    ``{(data set, layers, latents, objective, k): {epoch: result}}``, the
    largest K where an epoch was measured more than once.
  """
  curves = {}
  for r in results:
    cfg = r['config']
    if (cfg.get('optim', {}).get('schedule') != 'paper' or departures(cfg)
        or r.get('initialised_from')):
      continue
    dataset, layers, obj, k, lat, epoch = result_key(r)
    curve = curves.setdefault((dataset, layers, lat, obj, k), {})
    if epoch not in curve or r['k_nll'] > curve[epoch]['k_nll']:
      curve[epoch] = r
  return curves


def learning_curve_pairs(curves):
  """IWAE k against the k = 1 baseline (the paper's k = 1 row) and against
  the VAE with the same k samples, image by image (``paired_difference``),
  at every epoch both runs were measured.

  Returns:
    ``{(data set, layers, latents, IWAE's k, VAE's k): {epoch: (mean
    difference IWAE - VAE, paired standard error)}}``, only pairs with a
    difference at some epoch.
  """
  out = {}
  for (dataset, layers, lat, obj, k), iwae in sorted(curves.items()):
    for vae_k in sorted({1, k}) if obj == 'iwae' and k > 1 else ():
      vae = curves.get((dataset, layers, lat, 'vae', vae_k), {})
      paired = {e: paired_difference(iwae[e], vae[e]) for e in sorted(set(iwae) & set(vae))}
      paired = {e: d for e, d in paired.items() if d is not None}
      if paired:
        out[(dataset, layers, lat, k, vae_k)] = paired
  return out


def curve_label(dataset, layers, lat, name):
  """``name``, with the data set, layers and latents where not MNIST, 1 and 50."""
  extra = [s for s, shown in ((dataset.upper(), dataset != 'mnist'),
                              (f'{layers} layers', layers > 1),
                              (f'{lat} latents', lat != '50')) if shown]
  return name + (f' ({", ".join(extra)})' if extra else '')


def learning_curve_table(results):
  """Markdown table of the paper-schedule runs (``learning_curves``) at the
  ends of the schedule's stages (``config.STAGE_ENDS``): each run's test NLL
  and active units, then the paired IWAE - VAE differences
  (``learning_curve_pairs``); the last column holds the paper's final
  numbers (``paper_nll``; its IWAE - VAE for the pairs). Empty when no run was
  measured at a stage end.
  """
  curves = {key: {e: r for e, r in curve.items() if e in config_lib.STAGE_ENDS}
            for key, curve in learning_curves(results).items()}
  curves = {key: curve for key, curve in curves.items() if curve}
  if not curves:
    return ''
  epochs = sorted({e for curve in curves.values() for e in curve})
  lines = ['| epoch | ' + ' | '.join(map(str, epochs)) + ' | paper (3280) |',
           '|---|' + '---|' * (len(epochs) + 1)]

  def row(label, cells, paper=''):
    lines.append(f'| {label} | ' + ' | '.join(cells.get(e, '') for e in epochs)
                 + f' | {paper} |')

  order = lambda key: (key[:3], key[4], key[3] != 'vae')  # noqa: E731  VAE k=1, IWAE k=1, VAE k=5...
  for key in sorted(curves, key=order):
    dataset, layers, lat, obj, k = key
    name = curve_label(dataset, layers, lat, f'{obj.upper()} k = {k}')
    row(f'{name}: test NLL', {e: f"{r['test']['nll']['mean']:.2f}" for e, r in curves[key].items()},
        _cell(paper_nll(dataset, obj, lat, k)))
    row(f'{name}: active units',
        {e: '/'.join(map(str, r['active_units'])) for e, r in curves[key].items()})
  for (dataset, layers, lat, k, vae_k), paired in learning_curve_pairs(curves).items():
    name = curve_label(dataset, layers, lat, f'IWAE k = {k} − VAE k = {vae_k}, paired')
    row(name, {e: f'{d:+.2f} ± {se:.2f}' for e, (d, se) in paired.items()},
        _cell(paper_difference(dataset, lat, k, vae_k), '+.2f'))
  return '\n'.join(lines) + '\n'


def headline_table(results):
  """Markdown table of the Table 1 cells measured after the paper's full
  budget (``config.PAPER_EPOCHS``, the paper's setup, MNIST), each beside the
  paper's number, then the paired IWAE - VAE differences at equal k and
  against VAE k = 1 (``learning_curve_pairs``). Empty when none is measured.
  """
  final = config_lib.PAPER_EPOCHS
  curves = {key: {final: curve[final]} for key, curve in learning_curves(results).items()
            if key[0] == 'mnist' and final in curve}
  if not curves:
    return ''
  lines = ['| layers | objective | k | test NLL (ours) | paper | ours − paper |',
           '|---|---|---|---|---|---|']
  order = lambda key: (key[1], key[4], key[3] != 'vae')  # noqa: E731
  for key in sorted(curves, key=order):
    dataset, layers, lat, obj, k = key
    nll = curves[key][final]['test']['nll']
    paper = paper_nll(dataset, obj, lat, k)
    lines.append(f'| {layers} | {obj.upper()} | {k} | {nll["mean"]:.2f} ± {nll["stderr"]:.2f} '
                 f'| {_cell(paper)} | {_cell(None if paper is None else nll["mean"] - paper, "+.2f")} |')
  pairs = learning_curve_pairs(curves)
  if pairs:
    lines += ['', '| layers | paired on the same test images | ours | paper |', '|---|---|---|---|']
    for (dataset, layers, lat, k, vae_k), paired in pairs.items():
      d, se = paired[final]
      lines.append(f'| {layers} | IWAE k = {k} − VAE k = {vae_k} | {d:+.2f} ± {se:.2f} '
                   f'| {_cell(paper_difference(dataset, lat, k, vae_k), "+.2f")} |')
  return '\n'.join(lines) + '\n'


def per_image(result, name='test_log_likelihood'):
  """A result's per-image estimates (``[num_test]``), or None if not stored."""
  if 'per_image' not in result or 'path' not in result:
    return None
  path = os.path.join(os.path.dirname(result['path']), result['per_image'])
  if not os.path.exists(path):
    return None
  try:
    with np.load(path) as f:
      return f[name].astype(np.float64) if name in f else None
  except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
    _warn(f'{path}: unreadable per-image values ({type(e).__name__}); pairs with it left out')
    return None


def paired_differences(results):
  """IWAE - VAE test NLL at the same layers, k, latents and epochs, on the
  same binarised test images (same data checksum, evaluation seed, K and
  images), from the per-image estimates.

  Only runs with the same departures from the paper are paired (a fixed-
  binarisation IWAE is not set against a dynamic VAE).

  Returns:
    ``{(data set, layers, k, latents, epochs, departures): (mean difference,
    standard error)}``, departures as in the table ('' for the paper's
    setup); the standard error is that of the per-image differences, far
    smaller than either model's own, since the images' difficulty cancels.
  """
  by_key = {}
  for r in results:
    dataset, layers, obj, k, lat, ep = result_key(r)
    deps = ', '.join(departures(r['config']))
    by_key.setdefault((dataset, layers, k, lat, ep, deps), {})[obj] = r
  out = {}
  for key, pair in by_key.items():
    a, b = pair.get('iwae'), pair.get('vae')
    if a is None or b is None or key[2] == 1:
      continue
    diff = paired_difference(a, b)
    if diff is not None:
      out[key] = diff
  return out


def departure_differences(results):
  """Each run that departs from the paper's setup (``departures``) against
  the run with the same data set, layers, objective, k, latents and epochs
  that does not, on the same test images.

  Returns:
    ``{(data set, layers, objective, k, latents, epochs, departures): (run,
    baseline run, mean NLL difference run - baseline, paired standard
    error)}`` for the pairs with per-image estimates (see
    ``paired_difference``).
  """
  baseline = {result_key(r): r for r in results if not departures(r['config'])}
  out = {}
  for r in results:
    deps, base = departures(r['config']), baseline.get(result_key(r))
    diff = paired_difference(r, base) if deps and base is not None else None
    if diff is not None:
      out[result_key(r) + (', '.join(deps),)] = (r, base) + diff
  return out


def switched_differences(results):
  """Table 2's comparison: runs started from the same source checkpoint and
  trained for the same epochs, one with another objective or k ("switched"),
  one with the source's own ("continued"), image by image.

  Returns:
    ``{(data set, source run and epoch, epochs, switched): (continued, mean
    NLL difference switched - continued, paired standard error)}``, the
    objectives as ``IWAE k=50``.
  """
  groups = {}
  for r in results:
    source = r.get('initialised_from')
    if source:
      name = os.path.basename(os.path.normpath(source['run_dir']))
      key = (_dataset(r), f"{name} (epoch {source['epoch']})", r['epoch'])
      groups.setdefault(key, []).append(r)
  out = {}
  for key, runs in groups.items():
    own = [_name_k(r['config']['objective']) == _name_k(r['initialised_from']['objective'])
           for r in runs]
    for a, a_own in zip(runs, own):
      for b, b_own in zip(runs, own):
        diff = None if a_own or not b_own else paired_difference(a, b)
        if diff is not None:
          out[key + (_name_k(a['config']['objective']),)] = (
              _name_k(b['config']['objective']),) + diff
  return out


def paired_difference(a, b):
  """Test NLL of result ``a`` minus that of ``b``, image by image.

  Returns:
    ``(mean difference, standard error of the per-image differences)``, or
    None unless both hold per-image estimates on the same binarised test
    images (same data checksum, evaluation seed, number of images and K).
  """
  same = ('data_sha256', 'eval_binarization_seed', 'num_test', 'k_nll')
  if any(a.get(f) != b.get(f) for f in same):
    return None
  la, lb = per_image(a), per_image(b)
  if la is None or lb is None or la.shape != lb.shape:
    return None
  d = -(la - lb)  # NLL difference per image
  return float(d.mean()), float(d.std() / np.sqrt(len(d)))


BEGIN, END = '<!-- results-table:begin -->', '<!-- results-table:end -->'
CURVE_BEGIN, CURVE_END = '<!-- learning-curve:begin -->', '<!-- learning-curve:end -->'
HEADLINE_BEGIN, HEADLINE_END = '<!-- headline:begin -->', '<!-- headline:end -->'
# The documents whose generated tables evaluate.py --table --write rewrites.
DOCUMENTS = ('README.md', os.path.join('docs', 'REPORT.md'))


def tables(results):
  """``{(begin, end): markdown}`` of every generated table, from ``read_results``."""
  return {(BEGIN, END): table(newest(results)),
          (CURVE_BEGIN, CURVE_END): learning_curve_table(results),
          (HEADLINE_BEGIN, HEADLINE_END): headline_table(results)}


def write_tables(results, documents):
  """Rewrites, in each document, every generated table whose markers it holds.

  Raises:
    EvaluationError: a document holds no table's markers.
  """
  blocks = tables(results)
  for doc in documents:
    with open(doc) as f:
      text = f.read()
    found = [(b, e) for b, e in blocks if b in text and e in text]
    if not found:
      raise EvaluationError(f'{doc}: holds no generated table (no {BEGIN} ... {END} block)')
    for begin, end in found:
      write_table(blocks[(begin, end)], doc, begin, end)


def write_table(markdown, readme, begin=BEGIN, end=END):
  """Replaces the block between the markers ``begin`` and ``end`` in ``readme``."""
  with open(readme) as f:
    text = f.read()
  if begin not in text or end not in text:
    raise EvaluationError(f'{readme}: no {begin} ... {end} block to fill')
  head, rest = text.split(begin, 1)
  _, tail = rest.split(end, 1)
  tmp = readme + '.tmp'
  with open(tmp, 'w') as f:
    f.write(head + begin + '\n' + markdown + end + tail)
  os.replace(tmp, readme)

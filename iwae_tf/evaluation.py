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

Results are written as JSON in ``RUN/results/``, with the checkpoint, K,
seeds and data checksum they came from; an existing result file is never
overwritten unless asked.
"""

import glob
import json
import os
import time

import numpy as np
import tensorflow as tf

from iwae_tf import data as data_lib
from iwae_tf import metrics
from iwae_tf import training

PAPER = {  # Burda et al. 2016, Table 1: MNIST test NLL.
    ('vae', 1): {1: 86.76, 5: 86.47, 50: 86.35},
    ('iwae', 1): {1: 86.76, 5: 85.54, 50: 84.78},
    ('vae', 2): {1: 85.33, 5: 85.01, 50: 84.78},
    ('iwae', 2): {1: 85.33, 5: 83.89, 50: 82.90},
}
POSTER = {('iwae', 1, 5): {'nll': 99.70, 'active_units': 14}}


class EvaluationError(ValueError):
  """A run or checkpoint that cannot be evaluated as asked."""


def restore(run_dir, checkpoint=None):
  """Rebuilds a run's model and restores a checkpoint.

  Args:
    run_dir: a directory written by ``train.py``.
    checkpoint: None for the latest, an epoch number, or a checkpoint path.

  Returns:
    ``(config, model, checkpoint_path, epoch)``.
  """
  config = training.read_config(run_dir)
  model = training.build_model(config)
  ckpt, epoch = training.make_checkpoint(model)
  manager = training.checkpoint_manager(ckpt, run_dir)
  if checkpoint is None:
    path = manager.latest_checkpoint
    if path is None:
      raise EvaluationError(f'{run_dir}: no checkpoint yet (has train.py run an epoch?)')
  elif str(checkpoint).isdigit():
    path = os.path.join(run_dir, 'checkpoints', f'ckpt-{int(checkpoint)}')
  else:
    path = str(checkpoint)
  if not tf.io.gfile.exists(path + '.index'):
    raise EvaluationError(f'{path}: no such checkpoint '
                          f'(available: {manager.checkpoints or "none"})')
  try:
    ckpt.restore(path).expect_partial().assert_existing_objects_matched()
  except (AssertionError, ValueError, tf.errors.OpError) as e:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise EvaluationError(f'{path}: does not match the architecture in '
                          f'{run_dir}/config.json ({first})') from None
  return config, model, path, int(epoch.numpy())


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


def measure(model, x, ks, k_nll, seed, estimator):
  """Bounds and NLL estimate on binarised images ``x``.

  Returns:
    dict with ``L_k`` for each k (mean and standard error over images) and
    ``nll`` (= -mean log-likelihood estimate with ``k_nll`` samples).
  """
  out = {}
  for k in sorted(set(ks)):
    out[f'L_{k}'] = _summary(estimator.log_likelihood(x, k, seed))
  ll = estimator.log_likelihood(x, k_nll, seed)
  out['nll'] = {'mean': float(-ll.mean()), 'stderr': float(ll.std() / np.sqrt(len(ll))),
                'k': int(k_nll)}
  return out


def evaluate_run(run_dir, checkpoint=None, k_nll=5000, ks=(1, 5, 50), seed=0,
                 train_subset=0, prune=False, batch_size=100, chunk=100,
                 output=None, overwrite=False, limit_test=None, progress=print):
  """Measures a run; writes and returns the results.

  Args:
    run_dir: run directory.
    checkpoint: see ``restore``.
    k_nll: importance samples of the NLL estimate.
    ks: bounds to report.
    seed: seed of the importance samples.
    train_subset: also measure the first N training images (0: no).
    prune: also measure the NLL after pruning inactive units.
    batch_size, chunk: images per compiled call and samples per chunk.
    output: result path (default ``RUN/results/eval-ckpt<epoch>-K<K>.json``).
    overwrite: replace an existing result file.
    limit_test: measure only the first N test images (quick checks).

  Returns:
    The result dict.
  """
  if not os.path.isdir(run_dir):
    raise EvaluationError(f'{run_dir}: no such run directory')
  config, model, path, epoch = restore(run_dir, checkpoint)
  suffix = '' if limit_test is None else f'-n{limit_test}'
  output = output or os.path.join(run_dir, 'results',
                                  f'eval-ckpt{epoch}-K{k_nll}{suffix}.json')
  if os.path.exists(output) and not overwrite:
    raise EvaluationError(f'{output}: exists; pass --overwrite to replace it')
  splits = data_lib.make_splits(config.data)
  env_path = os.path.join(run_dir, 'environment.json')
  if os.path.exists(env_path):
    with open(env_path) as f:
      trained_on = json.load(f).get('data_sha256')
    if trained_on and trained_on != splits.sha256:
      raise EvaluationError(f'{splits.source}: data checksum differs from the one {run_dir} '
                            'was trained on')
  x_test = data_lib.binarize_fixed(splits.x_test[:limit_test], config.data.eval_seed)
  estimator = metrics.Estimator(model, batch_size=batch_size, chunk=chunk)
  start = time.time()
  progress(f'{run_dir}: epoch {epoch}, {len(x_test)} test images, K={k_nll}')
  result = {
      'run_dir': os.path.abspath(run_dir), 'checkpoint': path, 'epoch': epoch,
      'config': config.to_dict(), 'k_nll': int(k_nll), 'seed': int(seed),
      'eval_binarization_seed': config.data.eval_seed, 'data_sha256': splits.sha256,
      'num_test': len(x_test),
  }
  result['test'] = measure(model, x_test, ks, k_nll, seed, estimator)
  variances = metrics.posterior_mean_variances(model, x_test, seed)
  result['active_units'] = metrics.active_units(variances)
  result['posterior_mean_variances'] = [v.tolist() for v in variances]
  if train_subset:
    x_train = data_lib.binarize_fixed(splits.x_train[:train_subset], config.data.eval_seed)
    result['train'] = measure(model, x_train, ks, k_nll, seed, estimator)
  if prune:
    result['pruned_units'] = prune_inactive(model, variances)
    pruned = metrics.Estimator(model, batch_size=batch_size, chunk=chunk)
    ll = pruned.log_likelihood(x_test, k_nll, seed)
    result['test_pruned'] = {'nll': {'mean': float(-ll.mean()),
                                     'stderr': float(ll.std() / np.sqrt(len(ll))),
                                     'k': int(k_nll)}}
  result['seconds'] = time.time() - start
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  training.write_json_atomic(output, result)
  progress(f"NLL {result['test']['nll']['mean']:.2f} (K={k_nll}), "
           f"active units {result['active_units']}, {result['seconds']:.0f} s -> {output}")
  return result


# ------------------------------------------------------------------ the table
def collect(runs_root):
  """All full-test-set result files under ``runs_root``, newest epoch per run."""
  best = {}
  for path in sorted(glob.glob(os.path.join(runs_root, '**', 'results', 'eval-*.json'),
                               recursive=True)):
    with open(path) as f:
      r = json.load(f)
    if r.get('num_test') != 10000:
      continue
    key = r['run_dir']
    if key not in best or (r['epoch'], r['k_nll']) > (best[key]['epoch'], best[key]['k_nll']):
      best[key] = r
  return list(best.values())


def table(results):
  """Markdown table laid out like the paper's Table 1, with its numbers beside ours."""
  rows = []
  for r in results:
    cfg = r['config']
    obj, k = cfg['objective']['name'], cfg['objective']['k']
    layers = len(cfg['model']['latents'])
    paper = PAPER.get((obj, layers), {}).get(k)
    poster = POSTER.get((obj, layers, k), {})
    rows.append((layers, obj, k, '-'.join(map(str, cfg['model']['latents'])), r['epoch'],
                 r['test']['nll']['mean'], r['test']['nll']['stderr'], r['k_nll'],
                 '/'.join(map(str, r['active_units'])),  # per stochastic layer, h1 first
                 r.get('test_pruned', {}).get('nll', {}).get('mean'),
                 paper, poster.get('nll'), poster.get('active_units')))
  rows.sort()
  lines = ['| layers | objective | k | latents | epochs | test NLL (ours) | K | active units '
           '| NLL pruned | paper NLL (3280 ep.) | poster NLL (70 ep.) | poster active units |',
           '|---|---|---|---|---|---|---|---|---|---|---|---|']
  fmt = lambda v, p='.2f': '–' if v is None else format(v, p)  # noqa: E731
  for (layers, obj, k, lat, ep, nll, se, kn, au, pr, paper, pn, pa) in rows:
    lines.append(f'| {layers} | {obj.upper()} | {k} | {lat} | {ep} | {nll:.2f} ± {se:.2f} | {kn} '
                 f'| {au} | {fmt(pr)} | {fmt(paper)} | {fmt(pn)} | {fmt(pa, "d")} |')
  return '\n'.join(lines) + '\n'


BEGIN, END = '<!-- results-table:begin -->', '<!-- results-table:end -->'


def write_table(markdown, readme):
  """Replaces the block between the results-table markers in ``readme``."""
  with open(readme) as f:
    text = f.read()
  if BEGIN not in text or END not in text:
    raise EvaluationError(f'{readme}: no {BEGIN} ... {END} block to fill')
  head, rest = text.split(BEGIN, 1)
  _, tail = rest.split(END, 1)
  tmp = readme + '.tmp'
  with open(tmp, 'w') as f:
    f.write(head + BEGIN + '\n' + markdown + END + tail)
  os.replace(tmp, readme)

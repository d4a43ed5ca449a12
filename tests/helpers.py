"""What several test modules share: tiny configurations and models, random
binary images, and result files written as evaluate.py writes them."""

import json
import os

import numpy as np
import tensorflow as tf

from iwae_tf import config
from iwae_tf import metrics
from iwae_tf import model as model_lib
from iwae_tf import paper


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(run_dir, latents=(3,), objective='iwae', k=2, epochs=1, **kw):
  return config.TrainConfig(
      model=config.ModelConfig(latents=latents, hidden=tuple((16,) for _ in latents)),
      objective=config.ObjectiveConfig(objective, k),
      optim=config.OptimConfig(schedule='poster'),
      data=config.DataConfig(limit_train=80, validation_size=100),
      epochs=epochs, run_dir=str(run_dir), steps_per_execution=2, summary_subset=30,
      verbose=0, **kw)


def weights(model):
  return [v.numpy().copy() for v in model.trainable_variables]


SEED = tf.constant([3, 4], tf.int32)


def binary(n, d, seed=0):
  return tf.constant((np.random.default_rng(seed).random((n, d)) < 0.3).astype(np.float32))


def noise(m, k, x, seed=SEED):
  """The model's noise for ``k`` samples of each image of ``x``."""
  return m.draw_noise(k, x.shape[0], seed)


def log_weights(m, x, k, seed=SEED, **kwargs):
  return m.log_weights(x, noise(m, k, x, seed), **kwargs)


def make_model(latents, hidden=None, data_dim=784, bias=None):
  cfg = config.ModelConfig(latents=latents, hidden=hidden or paper.hidden_sizes(latents),
                           data_dim=data_dim)
  return model_lib.IWAEModel(cfg, output_bias=bias)


def fake_result(obj, k, latents, nll, au, epoch=70):
  return {'run_dir': f'/r/{obj}{k}', 'epoch': epoch, 'k_nll': 5000, 'num_test': 10000,
          'config': {'objective': {'name': obj, 'k': k}, 'model': {'latents': latents}},
          'test': {'nll': {'mean': nll, 'stderr': 0.3}}, 'active_units': au}


def write_result(root, run, obj, k, ll=None, epoch=70, latents=(50,), au=None, variances=None,
                 config=None, **extra):
  """A result file under ``root/run``, as evaluate.py writes them: with the
  per-image estimates ``ll`` beside it, one layer's posterior-mean
  ``variances`` (and the active units they give), ``config`` merged into
  the configuration and ``extra`` into the result."""
  d = root / run
  d.mkdir(exist_ok=True)
  r = fake_result(obj, k, list(latents), 0.0 if ll is None else float(-ll.mean()),
                  au or [20] * len(latents), epoch)
  r['config'].update(config or {})
  if variances is not None:
    r['posterior_mean_variances'] = [list(map(float, variances))]
    r['active_units'] = [int(np.sum(np.asarray(variances) > metrics.ACTIVE_THRESHOLD))]
  if ll is not None:
    np.savez_compressed(d / f'eval-{epoch}.npz', test_log_likelihood=ll.astype(np.float32))
    r.update(per_image=f'eval-{epoch}.npz', data_sha256='x', eval_binarization_seed=0)
  r.update(extra)
  (d / f'eval-{epoch}.json').write_text(json.dumps(r))

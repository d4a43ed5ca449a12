"""The paper's setup and numbers: the one home of what Burda, Grosse and
Salakhutdinov (2016, section 5 and appendix) and the authors' code did.

Setup (MNIST). Stochastic layers of 50 latents (1 layer) or 100 then 50 (2
layers), with two tanh layers of 200 units below the first stochastic layer
and two of 100 between deeper ones (``hidden_sizes``); Adam with learning
rate 1e-3, beta1 0.9, beta2 0.999 and epsilon 1e-4 (``ADAM``), minibatches
of 20 (``BATCH_SIZE``), dynamic binarisation, all 60,000 training images.
The configuration's defaults (``config.py``) are these values, and
``train.py``'s flags default to them.

Schedule. 8 stages ``i = 0..7``; stage ``i`` runs ``3**i`` epochs at learning
rate ``1e-3 * 10**(-i/7)``: 3280 epochs in all (``learning_rate``). The
"poster" schedule is the same cut after 70 epochs (the poster's
re-implementation). The "continue" schedule is the original code's
continuation of a trained model (the paper's Table 2): 3**7 = 2187 epochs at
the last stage's rate, 1e-4.

Procedures. ``paper`` follows the paper's text. ``original`` follows the
authors' code (yburda/iwae), which departs from the text in five ways:

* Adam with beta1 = 0.99 and the second moment initialised to ones, not
  zeros (the step is otherwise Keras' Adam: ``alpha = lr sqrt(1 - beta2^t) /
  (1 - beta1^t)``, ``t`` from 1 on and never reset between stages, applied
  to ``m / (sqrt(v) + 1e-4)`` with ``m``, ``v`` uncorrected);
* the objective summed over the minibatch's images, not averaged (the
  gradients are ``batch_size`` times larger);
* the minibatches in the data's own order, the same every epoch;
* the last 400 training images held out (59,600 used);
* stage ``i``'s learning rate ``base / 10 * round(10**(1 - i/7), 1)``
  (7.2e-4, 5.2e-4, ... for ``base = 1e-3``) rather than ``base * 10**(-i/7)``.

Its beta1 and held-out images are defaults of the flag mapping
(``config.from_flags``, from ``ORIGINAL_DEFAULTS``), recorded in the
configuration like any other value. The original code also counted active
units on the first 500 training images (``ORIGINAL_ACTIVE_UNITS_IMAGES``).

Numbers. ``TABLE1``: the paper's Table 1 test NLLs after 3280 epochs (MNIST
only: the OMNIGLOT column could not be confirmed from the paper's text here,
so it is left out rather than typed from memory). ``POSTER``: the poster's
re-implementation after 70 epochs.

Pure Python: nothing here imports TensorFlow or the rest of the package.
"""

PAPER_EPOCHS = sum(3**i for i in range(8))  # 3280
# Epoch counts at which the paper's stages end: 1, 4, 13, 40, 121, 364, 1093, 3280.
STAGE_ENDS = tuple(sum(3**j for j in range(i + 1)) for i in range(8))
POSTER_EPOCHS = 70
CONTINUE_EPOCHS = 3**7  # 2187

ADAM = {'learning_rate': 1e-3, 'beta1': 0.9, 'beta2': 0.999, 'epsilon': 1e-4}
BATCH_SIZE = 20
LATENTS = (50,)

# What --procedure=original changes in the defaults of other flags.
ORIGINAL_DEFAULTS = {'beta1': 0.99, 'validation_size': 400}
ORIGINAL_ACTIVE_UNITS_IMAGES = 500

# Table 1: test NLL after 3280 epochs, {data set: {(objective, latents): {k: NLL}}},
# latents as the tables write them ('50', '100-50').
TABLE1 = {
    'mnist': {
        ('vae', '50'): {1: 86.76, 5: 86.47, 50: 86.35},  # 1 stochastic layer
        ('iwae', '50'): {1: 86.76, 5: 85.54, 50: 84.78},
        ('vae', '100-50'): {1: 85.33, 5: 85.01, 50: 84.78},  # 2 stochastic layers
        ('iwae', '100-50'): {1: 85.33, 5: 83.89, 50: 82.90},
    },
}
# The poster's re-implementation (1 stochastic layer, 50 latents, 70 epochs),
# MNIST: {(objective, latents, k): ...}.
POSTER = {('iwae', '50', 5): {'nll': 99.70, 'active_units': 14}}


def hidden_sizes(latents):
  """The paper's hidden sizes: 2 x 200 units below the first stochastic layer,
  2 x 100 units between deeper stochastic layers."""
  return tuple((200, 200) if i == 0 else (100, 100) for i in range(len(latents)))


def learning_rate(epoch, base=ADAM['learning_rate'], schedule='paper', rounded=False):
  """The learning rate of a 0-based ``epoch``.

  ``paper``/``poster``: stage ``i`` covers epochs ``[sum_{j<i} 3**j,
  sum_{j<=i} 3**j)`` and uses ``base * 10**(-i/7)`` (``rounded``: the
  original code's ``base / 10 * round(10**(1 - i/7), 1)``); epochs past the
  last stage stay at the last rate. ``continue``: ``base / 10`` throughout.
  """
  if schedule == 'continue':
    return base * 0.1
  stage = min(sum(epoch >= end for end in STAGE_ENDS), len(STAGE_ENDS) - 1)
  if rounded:
    return base * 0.1 * round(10.0**(1 - stage / 7.0), 1)
  return base * 10.0**(-stage / 7.0)


def nll(dataset, objective, latents, k):
  """The paper's Table 1 test NLL, or None where it has none (or none
  confirmed): another data set, architecture (``latents`` as ``'50'``,
  ``'100-50'``), objective or k."""
  return TABLE1.get(dataset, {}).get((objective, latents), {}).get(k)


def difference(dataset, latents, k, vae_k):
  """The paper's IWAE k minus VAE vae_k test NLL, or None where it lacks either."""
  iwae, vae = nll(dataset, 'iwae', latents, k), nll(dataset, 'vae', latents, vae_k)
  return None if iwae is None or vae is None else iwae - vae


def departures(cfg):
  """How a run's configuration (``TrainConfig.to_dict()``, as results record
  it) departs from the paper's setup, as short labels; empty for the paper's.

  The seed is set against seed 0 like a departure (the seed-to-seed spread);
  the original procedure's own defaults are part of it, not departures of
  their own.
  """
  optim, data, obj = cfg.get('optim', {}), cfg.get('data', {}), cfg.get('objective', {})
  procedure = cfg.get('procedure', 'paper')
  own = ORIGINAL_DEFAULTS if procedure == 'original' else {}
  setup = dict(ADAM, beta1=own.get('beta1', ADAM['beta1']), batch_size=BATCH_SIZE)
  out = [] if procedure == 'paper' else [f'{procedure} procedure']
  out += [f'{name}={optim[name]:g}' for name, value in setup.items()
          if name in optim and optim[name] != value]
  if obj.get('estimator', 'iwae') != 'iwae':
    out.append(f"estimator={obj['estimator']}")
  if cfg.get('seed'):
    out.append(f"seed={cfg['seed']}")
  if data.get('validation_size', 0) != own.get('validation_size', 0):
    out.append(f"{data['validation_size']} held out")
  if data.get('limit_train'):
    out.append(f"{data['limit_train']} training images")
  if data.get('binarization', 'dynamic') != 'dynamic':
    out.append(f"{data['binarization']} binarisation (seed {data.get('train_binarization_seed', 0)})")
  hidden = cfg.get('model', {}).get('hidden')
  if hidden is not None and [list(h) for h in hidden] != [
      list(h) for h in hidden_sizes(cfg['model']['latents'])]:
    out.append('hidden=' + ';'.join(','.join(map(str, h)) for h in cfg['model']['hidden']))
  return out

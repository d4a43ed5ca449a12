"""Memory estimates: refuse a request that cannot fit before building it.

The per-sample work of a step or of an estimate is a latent path: one draw of
every stochastic layer for one image, through the decoders. Its live values,
in float32, are per decoder its hidden layers (twice: pre-activation and
tanh) and its output (twice: parameters and the elementwise log-probability),
and per stochastic layer four vectors of its size (noise, sample, and its
log-density terms under q and p). For the paper's 1-layer model that is 2,568
floats, 10.3 KB a path, which matches the 206 GiB that XLA tried to allocate
for ``--k=1000000`` at batch 20 (2e7 paths; 10.3 KB each).
"""


from iwae_tf import errors


class MemoryEstimateError(errors.IWAEError):
  """A request whose estimated memory exceeds what this machine has."""


def bytes_per_path(model_config):
  """Estimated bytes of one latent path (module docstring)."""
  latents, hidden = model_config.latents, model_config.hidden
  outputs = [model_config.data_dim] + list(latents[:-1])  # what each decoder predicts
  floats = sum(2 * sum(h) + 2 * out for h, out in zip(hidden, outputs))
  floats += 4 * sum(latents)
  return 4 * floats


def available_bytes():
  """This machine's available memory (Linux ``MemAvailable``), or None."""
  try:
    with open('/proc/meminfo') as f:
      for line in f:
        if line.startswith('MemAvailable:'):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return None


def _gib(n):
  return f'{n / 2**30:.1f} GiB'


def check_fits(paths, model_config, what, per, available=None):
  """Raises ``MemoryEstimateError`` when ``paths`` latent paths at once cannot fit.

  Args:
    paths: latent paths computed at once (``k * groups * batch`` in training,
      ``chunk * batch`` in evaluation).
    model_config: the ``ModelConfig``.
    what: the request, for the message (``'--k=1000000 at --batch_size=20'``).
    per: ``(flag name, paths per unit of it)``: the message names the largest
      value of that flag that fits.
    available: bytes to fit in (default: this machine's available memory).
  """
  available = available_bytes() if available is None else available
  if available is None:
    return
  need = paths * bytes_per_path(model_config)
  if need <= available:
    return
  flag, paths_per_unit = per
  largest = int(available // (bytes_per_path(model_config) * paths_per_unit))
  raise MemoryEstimateError(
      f'{what} needs about {_gib(need)} ({paths:,} latent paths at once), more than the '
      f'{_gib(available)} this machine has available; the largest --{flag} that fits is '
      f'about {largest:,}')


def device_has_own_memory():
  """Whether a GPU holds the work (its memory is not this machine's)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  return bool(tf.config.list_physical_devices('GPU'))

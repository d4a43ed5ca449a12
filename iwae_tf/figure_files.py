"""Where the figures go: each figure's PNG and, in one ``measurements.json``
beside them, the numbers it shows (``figures.py`` makes both and writes
nothing).

Only the figures drawn are written: a figure whose inputs are missing keeps
its PNG and its entry in ``measurements.json``. Every file is written under a
temporary name and then renamed, so that a writer killed midway leaves the
old files whole.

The figures made from result files alone (``from_results``) are redrawn by
the reproduction queue after each measurement, as it rewrites the tables;
``plots/regenerate.py`` draws them with the others.
"""

import json
import os

from iwae_tf import errors
from iwae_tf import rundir

MEASUREMENTS = 'measurements.json'

DPI = 110


def from_results(all_results):
  """``{name: make}`` of the figures drawn from result files alone.

  Args:
    all_results: a list of ``results.read_results``' results (every epoch
      measured), read once for all of them.

  Returns:
    ``{name: make}``; each ``make()`` returns ``(figure, measurements)`` or
    raises ``figures.Missing``.
  """
  # pylint: disable=import-outside-toplevel
  from iwae_tf import figures
  from iwae_tf import results
  return {
      'nll_vs_k': lambda: figures.nll_vs_k(results.newest(all_results)),
      'learning_curve': lambda: figures.learning_curve(all_results),
      'active_units': lambda: figures.active_units(all_results),
  }


def read_measurements(out_dir):
  """The measurements of every figure last drawn into ``out_dir`` ({} if none)."""
  path = os.path.join(out_dir, MEASUREMENTS)
  if not os.path.exists(path):
    return {}
  try:
    with open(path) as f:
      return json.load(f)
  except ValueError as e:
    raise errors.IWAEError(f'{path}: unreadable ({e}); restore it (git checkout {path}) '
                           'or remove it to start it anew') from None


def write(drawn, out_dir, say=print):
  """Writes ``drawn`` (``{name: (figure, measurements)}``) into ``out_dir``:
  ``<name>.png`` each, and their measurements into ``measurements.json``,
  whose other figures' entries are kept."""
  if not drawn:
    return
  # Read now, not when the drawing began: a queue may have written other
  # figures' entries meanwhile, and they are kept.
  measurements = read_measurements(out_dir)
  os.makedirs(out_dir, exist_ok=True)
  for name, (fig, _) in drawn.items():
    out = os.path.join(out_dir, f'{name}.png')
    fig.savefig(out + '.tmp', dpi=DPI, format='png')
    os.replace(out + '.tmp', out)
    say(f'wrote {out}')
  measurements.update(json.loads(json.dumps({n: m for n, (_, m) in drawn.items()}, default=str)))
  path = os.path.join(out_dir, MEASUREMENTS)
  rundir.write_json_atomic(path, measurements)
  say(f'wrote {path} ({", ".join(sorted(drawn))} updated)')


def redraw_from_results(all_results, out_dir, say=print):
  """Draws every figure of ``from_results(all_results)`` whose results exist
  into ``out_dir``; the others are left as they are. Returns the names drawn."""
  from iwae_tf import figures  # pylint: disable=import-outside-toplevel
  drawn = {}
  for name, make in from_results(all_results).items():
    try:
      drawn[name] = make()
    except figures.Missing:
      continue
  write(drawn, out_dir, say)
  return sorted(drawn)

"""Shared entry-point helpers: one-line errors and quiet TensorFlow logs."""

import os
import sys

from iwae_tf import errors


def quiet_tensorflow():
  """Silences TensorFlow's C++ start-up chatter (call before importing it)."""
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')


def run_main(main, argv):
  """Calls ``main(argv)``; the project's errors (``errors.IWAEError``) become
  one line on stderr and exit status 1; any other exception keeps its
  traceback."""
  try:
    return main(argv)
  except errors.IWAEError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(1)


def parse_int_list(text, name):
  """'100,50' -> (100, 50); raises ValueError naming the flag."""
  try:
    values = tuple(int(v) for v in text.split(',') if v.strip())
  except ValueError:
    raise errors.IWAEError(f'--{name}={text!r}: expected a comma-separated list of '
                           'integers') from None
  if not values:
    raise errors.IWAEError(f'--{name} is empty')
  return values

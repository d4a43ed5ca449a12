"""Shared entry-point helpers: one-line errors and quiet TensorFlow logs."""

import contextlib
import os
import signal
import sys
import tempfile
import threading

from iwae_tf import errors


# Lines that TensorFlow's C++ runtime writes to stderr while it starts,
# before its logging honours TF_CPP_MIN_LOG_LEVEL: on a machine without a GPU
# they report only that there is none.
START_UP_NOISE = (
    'All log messages before absl::InitializeLog() is called',
    'Could not find cuda drivers on your machine',
    'failed call to cuInit',
    'oneDNN custom operations are on',
    'Unable to register cu',
    'computation placer already registered',
    'This TensorFlow binary is optimized to use available CPU instructions',
    'To enable the following instructions',
)


def quiet_tensorflow():
  """Silences TensorFlow's C++ log below errors, and the libraries' Python
  loggers below warnings (call before importing them): Keras imports
  matplotlib, whose first import on a new machine logs that it built its font
  cache."""
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  import logging  # pylint: disable=import-outside-toplevel
  for name in ('matplotlib', 'h5py'):
    logging.getLogger(name).setLevel(logging.WARNING)


# XLA's CPU compiler prefers 256-bit vectors even where the processor has
# 512-bit ones; the training step's elementwise work (Adam's square roots and
# divisions, tanh, log-sum-exp) runs faster with 512 (bench/README.md).
VECTOR_WIDTH_FLAG = '--xla_cpu_prefer_vector_width=512'


def configure_xla(cpuinfo='/proc/cpuinfo'):
  """Adds ``VECTOR_WIDTH_FLAG`` to ``XLA_FLAGS`` on a processor with AVX-512
  (call before TensorFlow compiles anything). A vector width already set in
  ``XLA_FLAGS`` is kept: ``XLA_FLAGS=--xla_cpu_prefer_vector_width=256``
  restores XLA's default. tests/test_private_interfaces.py checks that XLA
  still knows the flag.

  Returns:
    Whether the flag was added.
  """
  flags = os.environ.get('XLA_FLAGS', '')
  if 'xla_cpu_prefer_vector_width' in flags:
    return False
  try:
    with open(cpuinfo) as f:
      avx512 = any(line.startswith('flags') and ' avx512f' in line for line in f)
  except OSError:  # not Linux: XLA's default
    return False
  if avx512:
    os.environ['XLA_FLAGS'] = f'{flags} {VECTOR_WIDTH_FLAG}'.strip()
  return avx512


@contextlib.contextmanager
def filtered_stderr(noise=START_UP_NOISE):
  """Holds back what is written to file descriptor 2 (C++ code included) and
  then replays every line that contains none of ``noise``."""
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as held:
    os.dup2(held.fileno(), 2)
    try:
      yield
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      held.seek(0)
      for line in held.read().decode(errors='replace').splitlines(keepends=True):
        if not any(n in line for n in noise):
          sys.stderr.write(line)
      sys.stderr.flush()


def start_tensorflow():
  """Imports TensorFlow and initialises its devices without the start-up
  noise, and keeps its Python warnings (retracing notes) below errors."""
  with filtered_stderr():
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    tf.config.list_physical_devices()
  from absl import logging  # pylint: disable=import-outside-toplevel
  logging.set_verbosity(logging.ERROR)
  tf.get_logger().setLevel('ERROR')


class Terminated(BaseException):
  """SIGTERM (what a scheduler sends), raised where Python code runs next."""


# The stop signals received (SIGINT, SIGTERM), kept after their exception is
# raised: a signal's handler runs wherever the main thread is, possibly inside
# library code that catches every exception (a bare ``except:``), which would
# swallow the stop and let the run go on. A SIGTERM'd run once trained to its
# end and exited 0 in CI; ``raise_if_stopped``, called after every compiled
# call, stops such a run within one call.
_stops = []


def _stop_exception(signum):
  return KeyboardInterrupt() if signum == signal.SIGINT else Terminated()


def _on_stop(signum, frame):
  _stops.append(signum)
  raise _stop_exception(signum)


def install_stop_handlers():
  """Makes Ctrl-C raise ``KeyboardInterrupt`` and SIGTERM ``Terminated``,
  each also recorded for ``raise_if_stopped``."""
  del _stops[:]
  for signum in (signal.SIGINT, signal.SIGTERM):
    signal.signal(signum, _on_stop)


def raise_if_stopped():
  """Raises again the exception of the first stop signal received since
  ``install_stop_handlers``, should library code have swallowed it."""
  if _stops:
    raise _stop_exception(_stops[0])


@contextlib.contextmanager
def signals_held(signums=(signal.SIGINT, signal.SIGTERM)):
  """Holds Ctrl-C and SIGTERM back for the body: one that arrives meanwhile
  takes effect (its handler runs) when the body ends.

  The Python-level handlers are swapped, not the thread's signal mask: a
  signal sent to the process may be delivered to any of TensorFlow's threads,
  and Python then runs its handler in the main thread whatever that thread's
  mask says. Outside the main thread (where handlers cannot be set) the body
  runs unguarded.
  """
  if threading.current_thread() is not threading.main_thread():
    yield
    return
  arrived = []
  old = {s: signal.signal(s, lambda signum, frame: arrived.append((signum, frame)))
         for s in signums}
  try:
    yield
  finally:
    for s, handler in old.items():
      signal.signal(s, handler)
    if arrived:
      signum, frame = arrived[0]
      handler = old[signum]
      if callable(handler):
        handler(signum, frame)
      elif handler == signal.SIG_DFL:
        signal.raise_signal(signum)


# TensorFlow's errors that mean the world outside failed (a full disk, a file
# that cannot be written), named so that this module need not import it.
WORLD_ERRORS = ('ResourceExhaustedError', 'PermissionDeniedError', 'DataLossError',
                'UnavailableError')


def _resume_hint():
  return f'rerun `python {" ".join(sys.argv)}` to resume'


def run_main(main, argv):
  """Calls ``main(argv)``; what goes wrong ends the command with one line on
  stderr and no traceback:

  * the project's errors (``errors.IWAEError``): exit status 1;
  * faults of the world outside (no space, no permission, out of memory, a
    file system error from TensorFlow): what happened, that what was saved is
    kept, and the command that resumes; exit status 1;
  * Ctrl-C: exit status 130; SIGTERM: 143.

  Any other exception (a bug) keeps its traceback.
  """
  install_stop_handlers()
  kept = 'every checkpoint and result already written is kept'
  try:
    result = main(argv)
    raise_if_stopped()  # a stop whose exception library code swallowed
    return result
  except errors.IWAEError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(1)
  except KeyboardInterrupt:
    print(f'stopped (Ctrl-C): {kept}; {_resume_hint()}', file=sys.stderr)
    sys.exit(130)
  except Terminated:
    print(f'stopped (SIGTERM): {kept}; {_resume_hint()}', file=sys.stderr)
    sys.exit(143)
  except MemoryError:
    print(f'error: out of memory; {kept}; try a smaller --k or --batch_size', file=sys.stderr)
    sys.exit(1)
  except OSError as e:
    where = f'{e.filename}: ' if e.filename else ''
    print(f'error: {where}{e.strerror or e}; {kept}; free space or fix permissions, then '
          f'{_resume_hint()}', file=sys.stderr)
    sys.exit(1)
  except Exception as e:  # pylint: disable=broad-except
    if type(e).__name__ not in WORLD_ERRORS or not type(e).__module__.startswith('tensorflow'):
      raise
    first = (str(getattr(e, 'message', e)).strip().splitlines() or [type(e).__name__])[0]
    print(f'error: {first[:300]}; {kept}; {_resume_hint()}', file=sys.stderr)
    sys.exit(1)

"""The project's errors: one base class, which the entry points catch.

Every error a user can cause (bad flags, data, run directories, checkpoints)
is an ``IWAEError`` and ends ``train.py``/``evaluate.py`` with one line and
exit status 1; anything else (a bug, TensorFlow's own errors) keeps its
traceback. The base subclasses ``ValueError`` so that library callers who
caught ``ValueError`` before still do.
"""


class IWAEError(ValueError):
  """Base of the project's errors."""

"""Simulates a Python without TensorFlow and TensorFlow Datasets (the GPU machine's image).

Put this folder first on ``PYTHONPATH``: Python imports ``sitecustomize`` at
start-up, and this one hides ``tensorflow``, ``tensorflow_datasets`` and
their submodules from every import finder, so ``import tensorflow_datasets``
raises ``ModuleNotFoundError`` and ``importlib.util.find_spec`` returns
``None``, as when they are not installed. Child processes inherit
``PYTHONPATH``, so they are blocked too. Used by
``parity_tests/test_device_check.py`` and ``.ci/run`` for the dry run of
``benchmarks/device_check.py``.
"""

import sys

BLOCKED = ("tensorflow", "tensorflow_datasets")


class _Hidden:
    """A meta-path finder that finds nothing of ``BLOCKED`` and defers to ``finder`` otherwise."""

    def __init__(self, finder):
        self._finder = finder

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            return None
        find = getattr(self._finder, "find_spec", None)
        return None if find is None else find(name, path, target)

    def __getattr__(self, attribute):
        return getattr(self._finder, attribute)


if not getattr(sys, "_scs_no_tfds", False):
    sys.meta_path[:] = [_Hidden(finder) for finder in sys.meta_path]
    sys._scs_no_tfds = True

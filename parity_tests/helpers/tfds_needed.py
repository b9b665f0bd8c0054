"""Tests that need TensorFlow Datasets skip, with the reason, where it is not installed.

The demos read every dataset through TFDS, even the small generated ones the
tests write (``--data-dir DIR --no-checksum`` builds them with TFDS); the GPU
machine's image has no TFDS (``benchmarks/device_check.py`` runs the parity
tests that need no data there). :func:`require_tfds` is called by the helpers
that write such data (:mod:`helpers.demo_data`) and by the tests that use
TFDS themselves.
"""

from __future__ import annotations

import importlib.util

import pytest

__all__ = ["HAVE_TFDS", "REASON", "require_tfds"]

HAVE_TFDS = importlib.util.find_spec("tensorflow_datasets") is not None
REASON = ("needs tensorflow_datasets, which is not installed (the demos read even generated data "
          "through TFDS; pip install -e '.[demos]')")


def require_tfds() -> None:
    """Skip the calling test unless ``tensorflow_datasets`` can be imported."""
    if not HAVE_TFDS:
        pytest.skip(REASON)

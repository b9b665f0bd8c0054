"""The demos' datasets as NumPy arrays, through TensorFlow Datasets: one module per dataset.

* :mod:`demos.data.fashion_mnist` and :mod:`demos.data.cifar10`: each a
  ``load(data_dir=None, *, tfds_data_dir=None, verify_checksum=True)`` returning
  an :class:`ImageDataset`, registered with its demo in :mod:`demos.registry`;
* :mod:`demos.data.tfds_idx`: what they share, the TFDS plumbing, the IDX
  format, and the order TFDS stores examples in.

Every dataset is built by its stock TFDS builder and read back as NumPy
arrays, so every user gets the same arrays in the same order, whether the
raw files came from the internet or from a local folder. Where the data
comes from, in order of preference:

* a dataset TFDS has already built in its data dir (``tfds_data_dir``
  argument, else ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``) is read
  directly: nothing is downloaded or checked again;
* local raw files (``data_dir``), checked against the official checksums and
  handed to the TFDS builder as its *manual* download, which TFDS checks
  against the size and sha256 it registers, exactly as it checks a download;
* the normal TFDS download, when nothing is built or local. A cheap check
  (one TCP connection, a few seconds at most) runs first; without a network
  the loader fails at once with :class:`DataUnavailableError` naming the
  fixes, instead of letting TFDS retry for minutes and leave ``*.tmp.*``
  folders behind.

With ``verify_checksum=False`` (generated test files) the raw formats are
parsed with NumPy and the examples put in TFDS's order; ``parity_tests/test_data.py``
checks that both sources give identical arrays.

Importing the package or a dataset module is cheap: TensorFlow and TFDS are
imported only inside the functions that need them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["ImageDataset", "DataUnavailableError", "DataFileError"]


class DataUnavailableError(RuntimeError):
    """The dataset could not be loaded; the message names the fixes."""


class DataFileError(DataUnavailableError, ValueError):
    """A local data file is missing, damaged or not the expected one.

    The message names the file and the fix. It is both a
    :class:`DataUnavailableError` and a :class:`ValueError`, so either
    ``except`` clause catches it.
    """


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """An image classification dataset held in memory.

    Attributes:
        train_images: ``(N, H, W, C)`` float32 in ``[0, 1]`` (NHWC): the uint8
            pixels divided by 255.
        train_labels: ``(N,)`` int32 class indices in ``[0, num_classes)``.
        test_images: ``(M, H, W, C)`` float32 in ``[0, 1]``.
        test_labels: ``(M,)`` int32.
        num_classes: number of classes (10 for both shipped datasets).
        name: the dataset's name in :mod:`demos.registry`, e.g. ``"fashion_mnist"``.
        source: human-readable description of where the arrays came from.
    """

    train_images: np.ndarray = field(repr=False)
    train_labels: np.ndarray = field(repr=False)
    test_images: np.ndarray = field(repr=False)
    test_labels: np.ndarray = field(repr=False)
    num_classes: int
    name: str
    source: str

    @property
    def image_shape(self) -> tuple[int, ...]:
        """``(H, W, C)`` of one image."""
        return tuple(self.train_images.shape[1:])

"""Small data files in the real formats of the demos' datasets, generated for tests.

* :func:`make_idx_dir`: the four Fashion-MNIST IDX files (gzipped), random images;
* :func:`make_cifar_archive`: a ``cifar-10-binary.tar.gz`` in the real binary
  format, every pixel a known function of its position (:func:`cifar_pixel`).

Both are loaded with ``--data-dir DIR --no-checksum`` (``verify_checksum=False``),
through TFDS: without it, the tests that make them skip (:mod:`helpers.tfds_needed`).
"""

from __future__ import annotations

import gzip
import io
import struct
import tarfile
from pathlib import Path

import numpy as np

from demos.data import cifar10

from .tfds_needed import require_tfds

__all__ = ["write_idx_gz", "make_idx_dir", "cifar_pixel", "make_cifar_archive"]


def write_idx_gz(path: Path, magic: int, array: np.ndarray) -> None:
    """Writes ``array`` (uint8) as a gzipped IDX file."""
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(gzip.compress(header + np.ascontiguousarray(array, np.uint8).tobytes()))


def make_idx_dir(folder: Path, n_train: int = 40, n_test: int = 16, seed: int = 0) -> Path:
    """The four Fashion-MNIST IDX files, holding random 28x28 images and labels."""
    require_tfds()
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        write_idx_gz(folder / f"{prefix}-images-idx3-ubyte.gz", 0x0803, images)
        write_idx_gz(folder / f"{prefix}-labels-idx1-ubyte.gz", 0x0801, labels)
    return folder


def cifar_pixel(index: np.ndarray, c, h, w):
    """Known CHW pattern: value of channel c, row h, column w of image `index`."""
    return (index * 37 + c * 101 + h * 7 + w * 3) % 256


def make_cifar_archive(folder: Path, per_batch: int = 3, n_test: int = 4) -> dict:
    """A cifar-10-binary.tar.gz in the real binary format; returns arrays."""
    require_tfds()
    folder.mkdir(parents=True, exist_ok=True)
    c, h, w = np.meshgrid(np.arange(3), np.arange(32), np.arange(32), indexing="ij")
    expected = {}
    members = {}
    for split, names in (
        ("train", [f"data_batch_{i}.bin" for i in range(1, 6)]),
        ("test", ["test_batch.bin"]),
    ):
        n_per = per_batch if split == "train" else n_test
        images, labels = [], []
        index = 0
        for name in names:
            blob = bytearray()
            for _ in range(n_per):
                label = (index * 3 + (split == "test")) % 10
                chw = cifar_pixel(index, c, h, w).astype(np.uint8)
                blob += bytes([label]) + chw.tobytes()
                images.append(chw.transpose(1, 2, 0))
                labels.append(label)
                index += 1
            members[f"cifar-10-batches-bin/{name}"] = bytes(blob)
        expected[split] = (np.stack(images), np.array(labels, np.uint8))
    members["cifar-10-batches-bin/batches.meta.txt"] = (
        "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n"
    ).encode()
    archive = folder / cifar10.ARCHIVE
    with tarfile.open(archive, "w:gz") as tar:
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return expected

"""Fashion-MNIST and CIFAR-10 as NumPy arrays, through TensorFlow Datasets.

Both datasets are built by the stock TFDS builders (``fashion_mnist`` and
``cifar10``) and read back with ``as_supervised=True, batch_size=-1`` and
``tfds.as_numpy``, so every user gets the same arrays in the same order,
whether the raw files came from the internet or from a local folder.

Where the data comes from, in order of preference:

* A dataset TFDS has already built in its data dir (``tfds_data_dir``
  argument, else ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``) is read
  directly: nothing is downloaded or checked again.
* Local raw files, handed to the TFDS builder as its *manual* download
  (``tfds.download.DownloadConfig(manual_dir=...)``). TFDS then checks them
  against the size and sha256 it registers for the download, exactly as it
  checks a download.

  - Fashion-MNIST: a folder holding the four official IDX files
    (``train-images-idx3-ubyte.gz`` ...). With ``data_dir=None`` the folder
    that ``apt-get install dataset-fashion-mnist`` fills,
    ``/usr/share/datasets/fashion-mnist``, is used when it holds all four.
    Debian re-wrapped those ``.gz`` files (the gzip header lost the stored
    file name and got a new timestamp; the deflate stream and its CRC are
    unchanged), so their sha256 differs from the registered one. This module
    therefore checks the sha256 of the *decompressed* IDX data against the
    official values, then rebuilds the original gzip header (file name and
    the original 2017 timestamp, which are known) in a staging folder; the
    result is byte-for-byte the file TFDS registers, and TFDS verifies it.
  - CIFAR-10: a folder holding ``cifar-10-binary.tar.gz`` (the binary
    version, 170,052,171 bytes), checked by size and sha256.

* The normal TFDS download, when nothing is built or local. A cheap check
  (one TCP connection, a few seconds at most) runs first; without a network
  the loader fails at once with :class:`DataUnavailableError` naming the
  fixes, instead of letting TFDS retry for minutes and leave ``*.tmp.*``
  folders behind.

The NumPy parsers in this module (``verify_checksum=False``, and the rare
fallback when local Fashion-MNIST files hold the official data but in a gzip
stream that cannot be turned back into the registered bytes) read the raw
formats directly and put the examples in TFDS's order. TFDS stores examples
sorted by ``md5(split_name + str(index))`` of their index in the source files
(``tensorflow_datasets/core/hashing.py``); ``parity_tests/test_data.py``
checks that both sources give identical arrays.

Importing this module is cheap: TensorFlow and TFDS are imported only inside
the functions that need them.

Data sources:

* Fashion-MNIST, by Zalando Research (MIT licence):
  https://github.com/zalandoresearch/fashion-mnist
* CIFAR-10, by Alex Krizhevsky, Vinod Nair and Geoffrey Hinton:
  https://www.cs.toronto.edu/~kriz/cifar.html
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import shutil
import socket
import struct
import tarfile
import tempfile
import threading
import urllib.parse
import urllib.request
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "CIFAR10_ARCHIVE",
    "DATASET_NAMES",
    "DEFAULT_FASHION_MNIST_DIR",
    "DataFileError",
    "DataUnavailableError",
    "ImageDataset",
    "load_cifar10",
    "load_dataset",
    "load_fashion_mnist",
]

log = logging.getLogger(__name__)

PathLike = str | os.PathLike

DEFAULT_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
DATASET_NAMES = ("fashion_mnist", "cifar10")

FASHION_MNIST_HOMEPAGE = "https://github.com/zalandoresearch/fashion-mnist"
CIFAR10_HOMEPAGE = "https://www.cs.toronto.edu/~kriz/cifar.html"

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR10_ARCHIVE = "cifar-10-binary.tar.gz"
CIFAR10_ARCHIVE_SIZE = 170_052_171
CIFAR10_ARCHIVE_SHA256 = (
    "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd"
)

# Seconds allowed for the "is the download host reachable" probe.
NETWORK_PROBE_TIMEOUT_S = 5.0


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
        num_classes: number of classes (10 for both datasets here).
        name: ``"fashion_mnist"`` or ``"cifar10"``.
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


# --------------------------------------------------------------------------
# Fashion-MNIST files
# --------------------------------------------------------------------------


class _IdxFile(NamedTuple):
    filename: str  # as published and as TFDS registers it
    split: str  # "train" / "test"
    kind: str  # "images" / "labels"
    magic: int  # IDX magic: 0x0803 = ubyte, 3 dims; 0x0801 = ubyte, 1 dim
    count: int  # official number of examples
    sha256: str  # sha256 of the decompressed IDX file
    gzip_mtime: int  # MTIME of the gzip header in the official .gz


# The decompressed sha256 values were computed from the Debian package
# (dataset-fashion-mnist), whose payload re-wrapped into the original gzip
# header gives exactly the sha256 TFDS registers for each official .gz. The
# original header is: 1f 8b 08 08 <MTIME, little-endian> 00 03
# <file name without ".gz"> 00 (FNAME set, XFL 0, OS 3 = Unix).
_FASHION_FILES: tuple[_IdxFile, ...] = (
    _IdxFile(
        "train-images-idx3-ubyte.gz", "train", "images", 0x0803, 60000,
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        1504176606,
    ),
    _IdxFile(
        "train-labels-idx1-ubyte.gz", "train", "labels", 0x0801, 60000,
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        1504176606,
    ),
    _IdxFile(
        "t10k-images-idx3-ubyte.gz", "test", "images", 0x0803, 10000,
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        1504176627,
    ),
    _IdxFile(
        "t10k-labels-idx1-ubyte.gz", "test", "labels", 0x0801, 10000,
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        1504176627,
    ),
)
FASHION_MNIST_FILES = tuple(f.filename for f in _FASHION_FILES)
_FASHION_SIDE = 28


def _fashion_fixes(tfds_dir: Path) -> str:
    names = ", ".join(FASHION_MNIST_FILES)
    return (
        "Fixes, any one of:\n"
        f"  1. go online once: TFDS downloads Fashion-MNIST and caches it in "
        f"{tfds_dir};\n"
        "  2. sudo apt-get install dataset-fashion-mnist  (puts the files in "
        f"{DEFAULT_FASHION_MNIST_DIR}, which is used automatically);\n"
        "  3. pass --data-dir DIR (data_dir=DIR in Python) pointing at a "
        f"folder that holds the four files {names} "
        f"(from {FASHION_MNIST_HOMEPAGE})."
    )


def _cifar_fixes(tfds_dir: Path) -> str:
    return (
        "Fixes, any one of:\n"
        f"  1. go online once: TFDS downloads CIFAR-10 and caches it in "
        f"{tfds_dir};\n"
        f"  2. fetch {CIFAR10_URL} (the binary version, "
        f"{CIFAR10_ARCHIVE_SIZE:,} bytes; see {CIFAR10_HOMEPAGE}) elsewhere "
        "and pass --data-dir DIR (data_dir=DIR in Python) pointing at the "
        f"folder that holds {CIFAR10_ARCHIVE}, or put it in "
        f"{tfds_dir / 'downloads' / 'manual'}."
    )


# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------


def _resolve_tfds_data_dir(tfds_data_dir: PathLike | None) -> Path:
    """``tfds_data_dir``, else ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``.

    Read at call time (TFDS itself reads ``TFDS_DATA_DIR`` only when it is
    imported), and always passed to TFDS explicitly.
    """
    if tfds_data_dir is not None:
        return Path(tfds_data_dir).expanduser()
    env = os.environ.get("TFDS_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / "tensorflow_datasets"


def _tfds_order(num_examples: int, split: str) -> np.ndarray:
    """Permutation TFDS applies when it writes a split.

    TFDS's writer sorts examples by ``md5(salt + key)`` where the salt is the
    split name and the key is the example key, here the example's index in
    the source files rendered with ``str()`` (see
    ``tensorflow_datasets/core/hashing.py``). Reading the built split with one
    file at a time (``interleave_cycle_length=1``) returns that order. Entry
    ``i`` is the source index of the ``i``-th example TFDS returns.
    """
    salted = hashlib.md5(split.encode("utf-8"), usedforsecurity=False)

    def key(index: int) -> bytes:
        h = salted.copy()
        h.update(str(index).encode("utf-8"))
        return h.digest()  # big-endian digest: same order as int(hexdigest)

    return np.array(sorted(range(num_examples), key=key), dtype=np.int64)


def _to_float01(images: np.ndarray) -> np.ndarray:
    if images.dtype != np.uint8:
        raise TypeError(f"expected uint8 images, got {images.dtype}")
    return images.astype(np.float32) / np.float32(255.0)


def _make_dataset(
    name: str,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    source: str,
    image_shape: tuple[int, int, int],
) -> ImageDataset:
    arrays = []
    for split, (images, labels) in (("train", train), ("test", test)):
        images = np.asarray(images)
        labels = np.asarray(labels)
        if images.ndim != 4 or images.shape[1:] != image_shape:
            raise DataUnavailableError(
                f"{name} {split} images have shape {images.shape}, expected "
                f"(N, {', '.join(map(str, image_shape))})"
            )
        if labels.shape != (images.shape[0],):
            raise DataUnavailableError(
                f"{name} {split}: {labels.shape[0]} labels for "
                f"{images.shape[0]} images"
            )
        arrays += [_to_float01(images), labels.astype(np.int32)]
    return ImageDataset(*arrays, num_classes=10, name=name, source=source)


def _network_reachable(url: str, timeout: float = NETWORK_PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to ``url``'s host (or its proxy) opens.

    Bounded by ``timeout`` seconds in total, DNS included (the probe runs in a
    daemon thread). A ``True`` does not promise the download will succeed; a
    ``False`` means it would not.
    """
    parsed = urllib.parse.urlsplit(url)
    host = parsed.hostname or ""
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(parsed.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        p = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = p.hostname or "", p.port or 80
    if not host:
        return False
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, name="data-net-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


# --------------------------------------------------------------------------
# IDX (Fashion-MNIST) reading and checking
# --------------------------------------------------------------------------


def _gunzip_file(path: Path) -> tuple[bytes, bytes]:
    """Returns (raw .gz bytes, decompressed bytes); DataFileError if damaged."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataFileError(f"cannot read {path}: {e}") from e
    try:
        data = gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as e:
        # EOFError: truncated; BadGzipFile (an OSError): not gzip or bad CRC.
        raise DataFileError(
            f"{path} is not a complete gzip file ({type(e).__name__}: {e}). "
            "It is probably truncated or damaged: download it again, or "
            "reinstall it with `sudo apt-get install --reinstall "
            "dataset-fashion-mnist`."
        ) from e
    return raw, data


def _parse_idx(path: Path, data: bytes, spec: _IdxFile) -> np.ndarray:
    """Checks the IDX header and returns the uint8 payload, shaped."""
    ndim = spec.magic & 0xFF
    header_len = 4 + 4 * ndim
    magic = struct.unpack(">I", data[:4])[0] if len(data) >= 4 else None
    if magic != spec.magic:
        found = "missing" if magic is None else f"0x{magic:08x}"
        raise DataFileError(
            f"{path}: IDX magic number is {found}, expected "
            f"0x{spec.magic:08x} for {spec.kind}; is this the right file?"
        )
    if len(data) < header_len:
        raise DataFileError(
            f"{path}: decompressed file has {len(data)} bytes, too short for "
            f"an IDX header of {header_len} bytes"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header_len])
    if spec.kind == "images" and dims[1:] != (_FASHION_SIDE, _FASHION_SIDE):
        raise DataFileError(
            f"{path}: images are {dims[1]}x{dims[2]}, expected "
            f"{_FASHION_SIDE}x{_FASHION_SIDE}"
        )
    expected = header_len + int(np.prod(dims, dtype=np.int64))
    if len(data) != expected:
        raise DataFileError(
            f"{path}: IDX header announces {dims} ({expected} bytes with the "
            f"header) but the decompressed file has {len(data)} bytes"
        )
    array = np.frombuffer(data, dtype=np.uint8, offset=header_len)
    if spec.kind == "images":
        return array.reshape(dims[0], _FASHION_SIDE, _FASHION_SIDE, 1)
    if array.size and int(array.max()) >= 10:
        raise DataFileError(
            f"{path}: label {int(array.max())} out of range 0..9"
        )
    return array


class _LocalIdx(NamedTuple):
    spec: _IdxFile
    path: Path
    raw_gz: bytes
    array: np.ndarray


def _read_fashion_folder(
    paths: dict[str, Path], verify_checksum: bool
) -> dict[str, _LocalIdx]:
    out = {}
    for spec in _FASHION_FILES:
        path = paths[spec.filename]
        raw, data = _gunzip_file(path)
        array = _parse_idx(path, data, spec)
        if verify_checksum:
            digest = hashlib.sha256(data).hexdigest()
            if digest != spec.sha256:
                raise DataFileError(
                    f"{path}: sha256 of the decompressed contents is {digest}, "
                    f"expected {spec.sha256} (the official Fashion-MNIST "
                    f"{spec.split} {spec.kind}, {spec.count} examples). "
                    "Replace the file with the official one from "
                    f"{FASHION_MNIST_HOMEPAGE} or `sudo apt-get install "
                    "dataset-fashion-mnist`; pass verify_checksum=False only "
                    "for files you generated yourself."
                )
        out[spec.filename] = _LocalIdx(spec, path, raw, array)
    for split in ("train", "test"):
        images, labels = (
            out[s.filename] for s in _FASHION_FILES if s.split == split
        )
        if images.array.shape[0] != labels.array.shape[0]:
            raise DataFileError(
                f"{images.path} holds {images.array.shape[0]} images but "
                f"{labels.path} holds {labels.array.shape[0]} labels"
            )
    return out


def _fashion_local_paths(folder: Path, required: bool) -> dict[str, Path] | None:
    paths = {name: folder / name for name in FASHION_MNIST_FILES}
    missing = [p for p in paths.values() if not p.is_file()]
    if not missing:
        return paths
    if required:
        raise DataFileError(
            "Fashion-MNIST data_dir "
            f"{folder} lacks {', '.join(str(p) for p in missing)}. Point "
            "--data-dir (data_dir=) at a folder holding all four files "
            f"{', '.join(FASHION_MNIST_FILES)} from {FASHION_MNIST_HOMEPAGE}, "
            "or `sudo apt-get install dataset-fashion-mnist` and leave "
            "data_dir unset."
        )
    if len(missing) < len(paths):
        warnings.warn(
            f"{folder} holds only some Fashion-MNIST files (missing: "
            f"{', '.join(p.name for p in missing)}); ignoring it. Reinstall "
            "with `sudo apt-get install --reinstall dataset-fashion-mnist`.",
            stacklevel=3,
        )
    return None


def _gzip_payload_offset(raw: bytes) -> int | None:
    """Offset of the deflate stream in a gzip member (RFC 1952), or None."""
    if len(raw) < 10 or raw[:3] != b"\x1f\x8b\x08":
        return None
    flags = raw[3]
    pos = 10
    try:
        if flags & 0x04:  # FEXTRA
            (xlen,) = struct.unpack("<H", raw[pos:pos + 2])
            pos += 2 + xlen
        for bit in (0x08, 0x10):  # FNAME, FCOMMENT: zero-terminated
            if flags & bit:
                pos = raw.index(b"\x00", pos) + 1
        if flags & 0x02:  # FHCRC
            pos += 2
    except (ValueError, struct.error):
        return None
    return pos if pos < len(raw) else None


def _official_gzip_bytes(local: _LocalIdx) -> bytes:
    """The .gz as published: the same deflate stream in the original header."""
    offset = _gzip_payload_offset(local.raw_gz)
    if offset is None:
        return local.raw_gz
    header = (
        b"\x1f\x8b\x08\x08"
        + struct.pack("<I", local.spec.gzip_mtime)
        + b"\x00\x03"
        + local.spec.filename.removesuffix(".gz").encode("ascii")
        + b"\x00"
    )
    return header + local.raw_gz[offset:]


def _fashion_from_arrays(
    local: dict[str, _LocalIdx], source: str
) -> ImageDataset:
    """Builds the dataset from parsed IDX arrays, in TFDS's example order."""
    splits = {}
    for split in ("train", "test"):
        images, labels = (
            local[s.filename].array for s in _FASHION_FILES if s.split == split
        )
        order = _tfds_order(images.shape[0], split)
        splits[split] = (images[order], labels[order])
    return _make_dataset(
        "fashion_mnist", splits["train"], splits["test"], source,
        (_FASHION_SIDE, _FASHION_SIDE, 1),
    )


# --------------------------------------------------------------------------
# CIFAR-10 binary archive reading and checking
# --------------------------------------------------------------------------

_CIFAR_PREFIX = "cifar-10-batches-bin/"
_CIFAR_TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
_CIFAR_TEST_FILES = ("test_batch.bin",)
_CIFAR_RECORD = 1 + 3 * 32 * 32


def _cifar_archive_path(data_dir: PathLike) -> Path:
    path = Path(data_dir).expanduser()
    if path.is_file():
        return path  # the archive itself was given
    archive = path / CIFAR10_ARCHIVE
    if not archive.is_file():
        raise DataFileError(
            f"CIFAR-10 data_dir {path} has no {archive.name} (looked for "
            f"{archive}). Download {CIFAR10_URL} (the binary version, "
            f"{CIFAR10_ARCHIVE_SIZE:,} bytes) into that folder, or leave "
            "data_dir unset to let TFDS download it."
        )
    return archive


def _check_cifar_archive(archive: Path) -> None:
    size = archive.stat().st_size
    if size != CIFAR10_ARCHIVE_SIZE:
        raise DataFileError(
            f"{archive} has {size:,} bytes, expected {CIFAR10_ARCHIVE_SIZE:,} "
            f"for {CIFAR10_ARCHIVE} (the binary version). Download it again "
            f"from {CIFAR10_URL}; pass verify_checksum=False only for an "
            "archive you generated yourself."
        )
    sha = hashlib.sha256()
    with archive.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    if sha.hexdigest() != CIFAR10_ARCHIVE_SHA256:
        raise DataFileError(
            f"{archive}: sha256 is {sha.hexdigest()}, expected "
            f"{CIFAR10_ARCHIVE_SHA256}. The file is damaged or not the "
            f"official archive: download it again from {CIFAR10_URL}."
        )


def _parse_cifar_records(where: str, data: bytes) -> tuple[np.ndarray, np.ndarray]:
    if len(data) % _CIFAR_RECORD:
        raise DataFileError(
            f"{where}: {len(data)} bytes is not a whole number of "
            f"{_CIFAR_RECORD}-byte CIFAR-10 records"
        )
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, _CIFAR_RECORD)
    labels = records[:, 0]
    if labels.size and int(labels.max()) >= 10:
        raise DataFileError(f"{where}: label {int(labels.max())} out of range 0..9")
    # Each record stores the red, green then blue 32x32 planes (CHW).
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def _read_cifar_archive(archive: Path) -> ImageDataset:
    """Parses ``cifar-10-binary.tar.gz`` with NumPy, in TFDS's example order."""
    wanted = {_CIFAR_PREFIX + n for n in _CIFAR_TRAIN_FILES + _CIFAR_TEST_FILES}
    contents: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                if member.name in wanted and member.isfile():
                    extracted = tar.extractfile(member)
                    if extracted is not None:
                        contents[member.name] = extracted.read()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise DataFileError(
            f"{archive} is not a complete .tar.gz ({type(e).__name__}: {e}). "
            f"It is probably truncated: download it again from {CIFAR10_URL}."
        ) from e
    missing = sorted(wanted - contents.keys())
    if missing:
        raise DataFileError(
            f"{archive} lacks {', '.join(missing)}; is it the binary version "
            f"({CIFAR10_ARCHIVE} from {CIFAR10_URL})?"
        )
    splits = {}
    for split, names in (("train", _CIFAR_TRAIN_FILES), ("test", _CIFAR_TEST_FILES)):
        parts = [
            _parse_cifar_records(f"{archive}:{_CIFAR_PREFIX}{n}", contents[_CIFAR_PREFIX + n])
            for n in names
        ]
        images = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        order = _tfds_order(images.shape[0], split)
        splits[split] = (images[order], labels[order])
    return _make_dataset(
        "cifar10", splits["train"], splits["test"],
        f"{archive} parsed with NumPy (checksum not verified; examples in "
        "TFDS order)",
        (32, 32, 3),
    )


# --------------------------------------------------------------------------
# TFDS plumbing
# --------------------------------------------------------------------------


def _import_tfds() -> Any:
    # Keep TensorFlow's C++ start-up chatter down unless the user asked for it.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:  # pragma: no cover - depends on the install
        raise DataUnavailableError(
            "tensorflow-datasets (and tensorflow-cpu) are needed to load the "
            "data: pip install -e '.[demos]'"
        ) from e
    return tfds


def _builder(tfds: Any, name: str, tfds_dir: Path) -> Any:
    return tfds.builder(name, data_dir=os.fspath(tfds_dir))


def _load_built(tfds: Any, builder: Any, name: str, image_shape, source: str) -> ImageDataset:
    """Reads both splits of a prepared builder as NumPy arrays.

    Equivalent to ``as_dataset(..., as_supervised=True, batch_size=-1)`` +
    ``tfds.as_numpy``, but batches by the split's own cardinality: with
    ``batch_size=-1`` TFDS batches by ``info.splits.total_num_examples`` and
    falls back to ``sys.maxsize`` when that is unknown (as under
    ``tfds.testing.mock_data``), which aborts TensorFlow 2.21.
    """
    # One shard at a time, so the examples come in the order TFDS wrote them
    # (the default interleaves shards when a split has several).
    read_config = tfds.ReadConfig(interleave_cycle_length=1)
    arrays = []
    for split in ("train", "test"):
        ds = builder.as_dataset(
            split=split,
            as_supervised=True,
            shuffle_files=False,
            read_config=read_config,
        )
        count = int(ds.cardinality())
        if count <= 0:  # unknown (-2) or infinite (-1)
            count = int(builder.info.splits[split].num_examples)
        if count <= 0:
            raise DataUnavailableError(
                f"TFDS {builder.name} in {builder.data_dir}: split {split!r} "
                "has no examples"
            )
        arrays.append(tfds.as_numpy(ds.batch(count).get_single_element()))
    return _make_dataset(name, arrays[0], arrays[1], source, image_shape)


def _describe(builder: Any, tfds_dir: Path) -> str:
    return f"TFDS {builder.name} {builder.version} in {tfds_dir}"


def _prepare_from_manual_dir(tfds: Any, builder: Any, manual_dir: Path, tfds_dir: Path) -> None:
    """Builds from files in ``manual_dir``; extraction goes to a temp folder."""
    tfds_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"{builder.name}-extract-", dir=tfds_dir))
    try:
        config = tfds.download.DownloadConfig(
            manual_dir=os.fspath(manual_dir),
            extract_dir=os.fspath(scratch),
            try_download_gcs=False,
        )
        builder.download_and_prepare(download_config=config)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _tmp_entries(downloads: Path) -> set[Path]:
    if not downloads.is_dir():
        return set()
    return {p for p in downloads.iterdir() if ".tmp." in p.name}


def _prepare_online(tfds: Any, builder: Any, tfds_dir: Path, url: str, what: str, fixes: str) -> None:
    """Normal TFDS download + build, after a fast reachability check."""
    if not _network_reachable(url):
        host = urllib.parse.urlsplit(url).hostname
        raise DataUnavailableError(
            f"{what} is not available offline: it is not built in the TFDS "
            f"data dir {tfds_dir}, no local files were found, and {host} "
            f"cannot be reached to download it.\n{fixes}"
        )
    downloads = tfds_dir / "downloads"
    before = _tmp_entries(downloads)
    log.info("Downloading %s with TFDS into %s", what, tfds_dir)
    try:
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(try_download_gcs=False)
        )
    except Exception as e:
        for leftover in _tmp_entries(downloads) - before:
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
        raise DataUnavailableError(
            f"TFDS could not download and build {what} into {tfds_dir} "
            f"({type(e).__name__}: {e}).\n{fixes}"
        ) from e


def _registered_url_infos(builder: Any) -> dict[str, Any]:
    """TFDS's registered downloads for ``builder``, keyed by file name."""
    infos = builder.url_infos or {}
    return {info.filename: info for info in infos.values() if info.filename}


# --------------------------------------------------------------------------
# Public loaders
# --------------------------------------------------------------------------


def load_fashion_mnist(
    data_dir: PathLike | None = None,
    *,
    tfds_data_dir: PathLike | None = None,
    verify_checksum: bool = True,
) -> ImageDataset:
    """Loads Fashion-MNIST (Zalando Research) through TFDS's ``fashion_mnist``.

    Data: https://github.com/zalandoresearch/fashion-mnist (MIT licence).

    Args:
        data_dir: folder holding the four official IDX files
            ``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
            ``t10k-images-idx3-ubyte.gz`` and ``t10k-labels-idx1-ubyte.gz``.
            ``None``: use ``DEFAULT_FASHION_MNIST_DIR``
            (``/usr/share/datasets/fashion-mnist``, filled by
            ``apt-get install dataset-fashion-mnist``) when it holds all four,
            otherwise the TFDS download.
        tfds_data_dir: where TFDS keeps built datasets and downloads; default
            ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``.
        verify_checksum: check the sha256 of each decompressed IDX file
            against the official one (and build through TFDS). ``False`` is
            for generated test files: the files are then only checked for a
            valid IDX structure and parsed with NumPy (TFDS's builder insists
            on the official files), with the examples put in TFDS's order.

    Returns:
        :class:`ImageDataset` with ``train_images`` (60000, 28, 28, 1) and
        ``test_images`` (10000, 28, 28, 1) float32 in [0, 1], labels (N,)
        int32 in 0..9, ``num_classes=10``, ``name="fashion_mnist"``, and
        ``source`` saying where the arrays came from. Built dataset, local
        files and download all give identical arrays.

    Raises:
        DataFileError: ``data_dir`` lacks a file, or a file is truncated, not
            IDX, or (with ``verify_checksum``) not the official contents;
            the message names the file and the fix. Also raised for a broken
            file in the default folder.
        DataUnavailableError: nothing built, nothing local and the download
            host unreachable (fails within seconds), or the download failed;
            the message names the fixes (go online, ``apt-get install
            dataset-fashion-mnist``, ``--data-dir``).
    """
    explicit = data_dir is not None
    folder = Path(data_dir if explicit else DEFAULT_FASHION_MNIST_DIR).expanduser()
    tfds_dir = _resolve_tfds_data_dir(tfds_data_dir)
    paths = _fashion_local_paths(folder, required=explicit)

    local = None
    if paths is not None and (explicit or not verify_checksum):
        local = _read_fashion_folder(paths, verify_checksum)
    if local is not None and not verify_checksum:
        return _fashion_from_arrays(
            local,
            f"IDX files in {folder} parsed with NumPy (checksums not "
            "verified; examples in TFDS order)",
        )

    tfds = _import_tfds()
    builder = _builder(tfds, "fashion_mnist", tfds_dir)
    if builder.is_prepared():
        note = f" (already built; files in {folder} verified)" if local else " (already built)"
        return _load_built(
            tfds, builder, "fashion_mnist", (28, 28, 1),
            _describe(builder, tfds_dir) + note,
        )

    if paths is not None:
        if local is None:
            local = _read_fashion_folder(paths, verify_checksum=True)
        return _build_fashion_from_local(tfds, builder, local, folder, tfds_dir)

    fixes = _fashion_fixes(tfds_dir)
    manual = tfds_dir / "downloads" / "manual"
    if all((manual / name).is_file() for name in FASHION_MNIST_FILES):
        try:
            _prepare_from_manual_dir(tfds, builder, manual, tfds_dir)
        except Exception as e:
            raise DataFileError(
                f"TFDS rejected the Fashion-MNIST files in {manual} "
                f"({type(e).__name__}: {e}). Remove them, or pass that folder "
                f"as --data-dir instead.\n{fixes}"
            ) from e
        source = f"{_describe(builder, tfds_dir)}, built from the files in {manual}"
    else:
        url = next(
            iter(builder.url_infos or {}),
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        )
        _prepare_online(tfds, builder, tfds_dir, url, "Fashion-MNIST", fixes)
        source = f"{_describe(builder, tfds_dir)}, downloaded by TFDS"
    return _load_built(tfds, builder, "fashion_mnist", (28, 28, 1), source)


def _build_fashion_from_local(
    tfds: Any, builder: Any, local: dict[str, _LocalIdx], folder: Path, tfds_dir: Path
) -> ImageDataset:
    """Stages the verified files as TFDS's manual download and builds."""
    registered = _registered_url_infos(builder)
    tfds_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="fashion_mnist-manual-", dir=tfds_dir))
    try:
        for name, item in local.items():
            blob = _official_gzip_bytes(item)
            info = registered.get(name)
            if (
                info is None
                or len(blob) != info.size
                or hashlib.sha256(blob).hexdigest() != info.checksum
            ):
                warnings.warn(
                    f"{item.path} holds the official Fashion-MNIST data but "
                    "its gzip stream cannot be turned back into the file TFDS "
                    "registers; parsing the IDX files with NumPy instead "
                    "(same arrays, same order).",
                    stacklevel=3,
                )
                return _fashion_from_arrays(
                    local,
                    f"IDX files in {folder} (official contents, sha256 "
                    "verified) parsed with NumPy; examples in TFDS order",
                )
            (staging / name).write_bytes(blob)
        log.info("Building TFDS fashion_mnist in %s from %s", tfds_dir, folder)
        _prepare_from_manual_dir(tfds, builder, staging, tfds_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return _load_built(
        tfds, builder, "fashion_mnist", (28, 28, 1),
        f"{_describe(builder, tfds_dir)}, built from the IDX files in {folder}",
    )


def load_cifar10(
    data_dir: PathLike | None = None,
    *,
    tfds_data_dir: PathLike | None = None,
    verify_checksum: bool = True,
) -> ImageDataset:
    """Loads CIFAR-10 through TFDS's ``cifar10`` builder.

    Data: https://www.cs.toronto.edu/~kriz/cifar.html (Krizhevsky, 2009).

    Args:
        data_dir: folder holding ``cifar-10-binary.tar.gz`` (the *binary*
            version, 170,052,171 bytes; not the Python-pickle archive), or the
            path of that archive. ``None``: the TFDS-built dataset, else a
            copy in ``<tfds_data_dir>/downloads/manual/``, else the TFDS
            download.
        tfds_data_dir: where TFDS keeps built datasets and downloads; default
            ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``.
        verify_checksum: check the archive's size and sha256, then build
            through TFDS with the archive as its manual download. ``False``
            is for generated archives in the same binary format (each record:
            1 label byte + 3072 bytes of CHW uint8 pixels, in
            ``cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin``): they
            are parsed with NumPy (TFDS insists on its registered checksum),
            with the examples put in TFDS's order.

    Returns:
        :class:`ImageDataset` with ``train_images`` (50000, 32, 32, 3) and
        ``test_images`` (10000, 32, 32, 3) float32 in [0, 1] (NHWC), labels
        (N,) int32 in 0..9, ``num_classes=10``, ``name="cifar10"``.

    Raises:
        DataFileError: ``data_dir`` has no archive, or the archive has the
            wrong size/sha256, is truncated, or lacks a batch file; the
            message names the file and the fix.
        DataUnavailableError: nothing built, nothing local and the download
            host unreachable (fails within seconds), or the download failed.
    """
    tfds_dir = _resolve_tfds_data_dir(tfds_data_dir)
    fixes = _cifar_fixes(tfds_dir)
    archive = None
    if data_dir is not None:
        archive = _cifar_archive_path(data_dir)
        if not verify_checksum:
            return _read_cifar_archive(archive)
        _check_cifar_archive(archive)

    tfds = _import_tfds()
    builder = _builder(tfds, "cifar10", tfds_dir)
    if builder.is_prepared():
        note = f" (already built; {archive} verified)" if archive else " (already built)"
        return _load_built(tfds, builder, "cifar10", (32, 32, 3),
                           _describe(builder, tfds_dir) + note)

    if archive is not None:
        # TFDS looks for the registered file name in manual_dir.
        tfds_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="cifar10-manual-", dir=tfds_dir))
        try:
            link = staging / CIFAR10_ARCHIVE
            try:
                link.symlink_to(archive.resolve())
            except OSError:
                shutil.copyfile(archive, link)
            _prepare_from_manual_dir(tfds, builder, staging, tfds_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        source = f"{_describe(builder, tfds_dir)}, built from {archive}"
    elif (tfds_dir / "downloads" / "manual" / CIFAR10_ARCHIVE).is_file():
        manual = tfds_dir / "downloads" / "manual"
        try:
            _prepare_from_manual_dir(tfds, builder, manual, tfds_dir)
        except Exception as e:
            raise DataFileError(
                f"TFDS rejected {manual / CIFAR10_ARCHIVE} ({type(e).__name__}: "
                f"{e}). Download it again from {CIFAR10_URL}.\n{fixes}"
            ) from e
        source = f"{_describe(builder, tfds_dir)}, built from {manual / CIFAR10_ARCHIVE}"
    else:
        _prepare_online(tfds, builder, tfds_dir, CIFAR10_URL, "CIFAR-10", fixes)
        source = f"{_describe(builder, tfds_dir)}, downloaded by TFDS"
    return _load_built(tfds, builder, "cifar10", (32, 32, 3), source)


_LOADERS = {"fashion_mnist": load_fashion_mnist, "cifar10": load_cifar10}


def load_dataset(
    name: str,
    data_dir: PathLike | None = None,
    *,
    tfds_data_dir: PathLike | None = None,
    verify_checksum: bool = True,
) -> ImageDataset:
    """Loads ``"fashion_mnist"`` or ``"cifar10"`` (see the two loaders).

    ``"fashion-mnist"`` and ``"cifar-10"`` are accepted too. Sources:
    Fashion-MNIST by Zalando Research,
    https://github.com/zalandoresearch/fashion-mnist; CIFAR-10,
    https://www.cs.toronto.edu/~kriz/cifar.html.

    Returns:
        :class:`ImageDataset` (NHWC float32 images in [0, 1], int32 labels).

    Raises:
        ValueError: unknown ``name`` (the message lists the choices).
        DataFileError, DataUnavailableError: as the loaders.
    """
    key = name.strip().lower().replace("-", "_")
    key = {"cifar_10": "cifar10"}.get(key, key)
    if key not in _LOADERS:
        raise ValueError(
            f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}"
        )
    return _LOADERS[key](
        data_dir, tfds_data_dir=tfds_data_dir, verify_checksum=verify_checksum
    )

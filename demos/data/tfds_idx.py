"""What the dataset modules share: TFDS plumbing, the IDX format, TFDS's example order.

* TFDS: where its data dir is (:func:`resolve_tfds_data_dir`), building a
  dataset from local files (:func:`prepare_from_manual_dir`) or by download
  after a fast network check (:func:`prepare_online`), by one process at a
  time among those sharing a data dir (:func:`load_or_build`), and reading
  a built dataset back as arrays (:func:`load_built`). TensorFlow and TFDS are
  imported only inside these functions.
* The order TFDS stores examples in (:func:`tfds_order`), so that files
  parsed with NumPy give TFDS's arrays exactly.
* IDX, the MNIST family's format: gzipped files (:func:`gunzip_file`) with a
  typed header (:func:`parse_idx`, :class:`IdxFile`), and the official gzip
  header rebuilt around a re-packed file (:func:`official_gzip_bytes`).
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import logging
import os
import shutil
import socket
import struct
import sys
import tempfile
import threading
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from . import DataFileError, DataUnavailableError, ImageDataset

log = logging.getLogger(__name__)

PathLike = str | os.PathLike

# Seconds allowed for the "is the download host reachable" probe.
NETWORK_PROBE_TIMEOUT_S = 5.0


# --------------------------------------------------------------------------
# Arrays in TFDS's order
# --------------------------------------------------------------------------


def resolve_tfds_data_dir(tfds_data_dir: PathLike | None) -> Path:
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


def tfds_order(num_examples: int, split: str) -> np.ndarray:
    """Permutation TFDS applies when it writes a split: int64 ``(num_examples,)``.

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


def make_dataset(
    name: str,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    source: str,
    image_shape: tuple[int, int, int],
    num_classes: int = 10,
) -> ImageDataset:
    """An :class:`ImageDataset` from ``(images, labels)`` per split.

    Args:
        train, test: uint8 images ``(N, H, W, C)`` with ``(H, W, C) == image_shape``
            and integer labels ``(N,)``.

    Raises:
        DataUnavailableError: shapes that do not fit; TypeError: images not uint8.
    """
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
    return ImageDataset(*arrays, num_classes=num_classes, name=name, source=source)


# --------------------------------------------------------------------------
# IDX files
# --------------------------------------------------------------------------


class IdxFile(NamedTuple):
    """One official gzipped IDX file of a dataset."""

    filename: str  # as published and as TFDS registers it
    split: str  # "train" / "test"
    kind: str  # "images" / "labels"
    magic: int  # IDX magic: 0x0803 = ubyte, 3 dims; 0x0801 = ubyte, 1 dim
    count: int  # official number of examples
    sha256: str  # sha256 of the decompressed IDX file
    gzip_mtime: int  # MTIME of the gzip header in the official .gz


class LocalIdx(NamedTuple):
    """A local copy of an :class:`IdxFile`: its path, raw ``.gz`` bytes and parsed array."""

    spec: IdxFile
    path: Path
    raw_gz: bytes
    array: np.ndarray


def gunzip_file(path: Path, fix: str) -> tuple[bytes, bytes]:
    """Returns (raw .gz bytes, decompressed bytes); DataFileError, ending in ``fix``, if damaged."""
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
            f"It is probably truncated or damaged: {fix}"
        ) from e
    return raw, data


def parse_idx(path: Path, data: bytes, spec: IdxFile, side: int, num_classes: int = 10) -> np.ndarray:
    """Checks the IDX header and returns the uint8 payload: images ``(N, side, side, 1)``, labels ``(N,)``."""
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
    if spec.kind == "images" and dims[1:] != (side, side):
        raise DataFileError(f"{path}: images are {dims[1]}x{dims[2]}, expected {side}x{side}")
    expected = header_len + int(np.prod(dims, dtype=np.int64))
    if len(data) != expected:
        raise DataFileError(
            f"{path}: IDX header announces {dims} ({expected} bytes with the "
            f"header) but the decompressed file has {len(data)} bytes"
        )
    array = np.frombuffer(data, dtype=np.uint8, offset=header_len)
    if spec.kind == "images":
        return array.reshape(dims[0], side, side, 1)
    if array.size and int(array.max()) >= num_classes:
        raise DataFileError(
            f"{path}: label {int(array.max())} out of range 0..{num_classes - 1}"
        )
    return array


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


def official_gzip_bytes(local: LocalIdx) -> bytes:
    """The .gz as published: the same deflate stream in the original header.

    The original header is ``1f 8b 08 08 <MTIME, little-endian> 00 03 <file
    name without ".gz"> 00`` (FNAME set, XFL 0, OS 3 = Unix).
    """
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


# --------------------------------------------------------------------------
# TFDS plumbing
# --------------------------------------------------------------------------


def import_tfds() -> Any:
    """``tensorflow_datasets``, with TensorFlow's C++ start-up chatter down unless asked for."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:  # pragma: no cover - depends on the install
        raise DataUnavailableError(
            "tensorflow-datasets (and tensorflow-cpu) are needed to load the "
            "data: pip install -e '.[demos]'"
        ) from e
    return tfds


def silence_progress_bars() -> None:
    """TFDS draws its own progress bars while it builds a dataset; hide them (``--no-progress``)."""
    if "tensorflow_datasets" not in sys.modules and importlib.util.find_spec("tensorflow_datasets") is None:
        return
    import_tfds().disable_progress_bar()


def tfds_builder(tfds: Any, name: str, tfds_dir: Path) -> Any:
    """TFDS's stock builder ``name`` with its data in ``tfds_dir``."""
    return tfds.builder(name, data_dir=os.fspath(tfds_dir))


@contextmanager
def one_build_at_a_time(tfds_dir: Path, name: str) -> Iterator[None]:
    """Holds an exclusive ``flock`` on ``tfds_dir/.{name}.build.lock`` for the block.

    Where the folder cannot be written, the filesystem has no locks (``ENOLCK``,
    some NFS mounts) or the system is not POSIX, the block runs unlocked.

    >>> import tempfile
    >>> with one_build_at_a_time(Path(tempfile.mkdtemp()), "fashion_mnist"):
    ...     pass
    """
    try:
        tfds_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(tfds_dir / f".{name}.build.lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:  # a read-only data dir: nothing can be built there anyway
        fd = None
    # The block runs outside the ``except`` above, so an error of its own is not
    # reported as raised "during handling of" the OSError.
    try:
        if fd is not None:
            _lock_exclusively(fd)
        yield
    finally:
        if fd is not None:
            os.close(fd)  # releases the lock


def _lock_exclusively(fd: int) -> None:
    """Waits for an exclusive ``flock`` on ``fd``; does nothing where there are no locks."""
    try:
        import fcntl
        fcntl.flock(fd, fcntl.LOCK_EX)
    except (ImportError, OSError):  # pragma: no cover - no locks here
        pass


def load_or_build(tfds: Any, name: str, tfds_dir: Path, load: Callable[[Any], ImageDataset],
                  build: Callable[[Any], ImageDataset]) -> ImageDataset:
    """``load(builder)`` if TFDS's ``name`` is built in ``tfds_dir``, else ``build(builder)``.

    ``build`` builds the dataset and returns it. Of several processes that find it
    unbuilt at once (``--workers N`` on a fresh machine), one builds, under
    :func:`one_build_at_a_time`; the others wait for it, then load what it built.
    Without the lock each built it too, and all but the first failed in TFDS's
    final rename (``FileExistsError``). A built dataset is loaded without the
    lock: TFDS renames a build into place only once it is complete.
    """
    builder = tfds_builder(tfds, name, tfds_dir)
    if not builder.is_prepared():
        with one_build_at_a_time(tfds_dir, name):
            builder = tfds_builder(tfds, name, tfds_dir)  # built while this one waited?
            if not builder.is_prepared():
                return build(builder)
    return load(builder)


def describe(builder: Any, tfds_dir: Path) -> str:
    """Where a TFDS dataset lives, for an ``ImageDataset.source``."""
    return f"TFDS {builder.name} {builder.version} in {tfds_dir}"


def load_built(tfds: Any, builder: Any, name: str, image_shape, source: str) -> ImageDataset:
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
    return make_dataset(name, arrays[0], arrays[1], source, image_shape)


def prepare_from_manual_dir(tfds: Any, builder: Any, manual_dir: Path, tfds_dir: Path) -> None:
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


def network_reachable(url: str, timeout: float = NETWORK_PROBE_TIMEOUT_S) -> bool:
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


def _tmp_entries(downloads: Path) -> set[Path]:
    if not downloads.is_dir():
        return set()
    return {p for p in downloads.iterdir() if ".tmp." in p.name}


def prepare_online(tfds: Any, builder: Any, tfds_dir: Path, url: str, what: str, fixes: str) -> None:
    """Normal TFDS download + build, after a fast reachability check."""
    if not network_reachable(url):
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


def registered_url_infos(builder: Any) -> dict[str, Any]:
    """TFDS's registered downloads for ``builder``, keyed by file name."""
    infos = builder.url_infos or {}
    return {info.filename: info for info in infos.values() if info.filename}

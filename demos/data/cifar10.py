"""CIFAR-10 (Krizhevsky, Nair and Hinton, 2009) through TFDS's ``cifar10`` builder.

Data: https://www.cs.toronto.edu/~kriz/cifar.html

The local file is the official *binary* archive, :data:`ARCHIVE`
(170,052,171 bytes; not the Python-pickle archive torchvision uses), checked
by size and sha256 and handed to TFDS as its manual download. Generated
archives in the same format (``verify_checksum=False``) are parsed with NumPy:
each record is 1 label byte + 3072 bytes of CHW uint8 pixels, in
``cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin``.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from . import DataFileError, ImageDataset, tfds_idx
from .tfds_idx import PathLike

__all__ = ["ARCHIVE", "ARCHIVE_SIZE", "ARCHIVE_SHA256", "LOCAL_FILES", "URL", "load"]

NAME = "cifar10"  # the dataset's name here and TFDS's builder
HOMEPAGE = "https://www.cs.toronto.edu/~kriz/cifar.html"
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
ARCHIVE = "cifar-10-binary.tar.gz"
ARCHIVE_SIZE = 170_052_171
ARCHIVE_SHA256 = "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd"
#: What ``--data-dir`` holds (the demos' ``--help``).
LOCAL_FILES = ARCHIVE

_SHAPE = (32, 32, 3)
_PREFIX = "cifar-10-batches-bin/"
_TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
_TEST_FILES = ("test_batch.bin",)
_RECORD = 1 + 3 * 32 * 32


def load(
    data_dir: PathLike | None = None,
    *,
    tfds_data_dir: PathLike | None = None,
    verify_checksum: bool = True,
) -> ImageDataset:
    """Loads CIFAR-10: 50,000 training and 10,000 test images, 32x32 RGB, 10 classes.

    Args:
        data_dir: folder holding :data:`ARCHIVE`, or the path of that archive.
            ``None``: the TFDS-built dataset, else a copy in
            ``<tfds_data_dir>/downloads/manual/``, else the TFDS download.
        tfds_data_dir: where TFDS keeps built datasets and downloads; default
            ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``.
        verify_checksum: check the archive's size and sha256, then build
            through TFDS with the archive as its manual download. ``False``
            is for generated archives in the same binary format: they are
            parsed with NumPy (TFDS insists on its registered checksum), with
            the examples put in TFDS's order.

    Returns:
        :class:`~demos.data.ImageDataset` with ``train_images`` (50000, 32, 32, 3)
        and ``test_images`` (10000, 32, 32, 3) float32 in [0, 1] (NHWC), labels
        (N,) int32 in 0..9, ``num_classes=10``, ``name="cifar10"``.

    Raises:
        DataFileError: ``data_dir`` has no archive, or the archive has the
            wrong size/sha256, is truncated, or lacks a batch file; the
            message names the file and the fix.
        DataUnavailableError: nothing built, nothing local and the download
            host unreachable (fails within seconds), or the download failed.
    """
    tfds_dir = tfds_idx.resolve_tfds_data_dir(tfds_data_dir)
    archive = None
    if data_dir is not None:
        archive = _archive_path(data_dir)
        if not verify_checksum:
            return _read_archive(archive)
        _check_archive(archive)

    tfds = tfds_idx.import_tfds()

    def load_prepared(builder: Any) -> ImageDataset:
        note = f" (already built; {archive} verified)" if archive else " (already built)"
        return tfds_idx.load_built(tfds, builder, NAME, _SHAPE,
                                   tfds_idx.describe(builder, tfds_dir) + note)

    def build(builder: Any) -> ImageDataset:
        source = _build(tfds, builder, archive, tfds_dir)
        return tfds_idx.load_built(tfds, builder, NAME, _SHAPE, source)

    return tfds_idx.load_or_build(tfds, NAME, tfds_dir, load_prepared, build)


def _fixes(tfds_dir: Path) -> str:
    return (
        "Fixes, any one of:\n"
        f"  1. go online once: TFDS downloads CIFAR-10 and caches it in "
        f"{tfds_dir};\n"
        f"  2. fetch {URL} (the binary version, "
        f"{ARCHIVE_SIZE:,} bytes; see {HOMEPAGE}) elsewhere "
        "and pass --data-dir DIR (data_dir=DIR in Python) pointing at the "
        f"folder that holds {ARCHIVE}, or put it in "
        f"{tfds_dir / 'downloads' / 'manual'}."
    )


def _build(tfds: Any, builder: Any, archive: Path | None, tfds_dir: Path) -> str:
    """Builds the dataset from ``archive``, TFDS's manual folder or the download; returns the source."""
    fixes = _fixes(tfds_dir)
    manual = tfds_dir / "downloads" / "manual"
    if archive is not None:
        # TFDS looks for the registered file name in manual_dir.
        tfds_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="cifar10-manual-", dir=tfds_dir))
        try:
            link = staging / ARCHIVE
            try:
                link.symlink_to(archive.resolve())
            except OSError:
                shutil.copyfile(archive, link)
            tfds_idx.prepare_from_manual_dir(tfds, builder, staging, tfds_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return f"{tfds_idx.describe(builder, tfds_dir)}, built from {archive}"
    if (manual / ARCHIVE).is_file():
        try:
            tfds_idx.prepare_from_manual_dir(tfds, builder, manual, tfds_dir)
        except Exception as e:
            raise DataFileError(
                f"TFDS rejected {manual / ARCHIVE} ({type(e).__name__}: "
                f"{e}). Download it again from {URL}.\n{fixes}"
            ) from e
        return f"{tfds_idx.describe(builder, tfds_dir)}, built from {manual / ARCHIVE}"
    tfds_idx.prepare_online(tfds, builder, tfds_dir, URL, "CIFAR-10", fixes)
    return f"{tfds_idx.describe(builder, tfds_dir)}, downloaded by TFDS"


def _archive_path(data_dir: PathLike) -> Path:
    path = Path(data_dir).expanduser()
    if path.is_file():
        return path  # the archive itself was given
    archive = path / ARCHIVE
    if not archive.is_file():
        raise DataFileError(
            f"CIFAR-10 data_dir {path} has no {archive.name} (looked for "
            f"{archive}). Download {URL} (the binary version, "
            f"{ARCHIVE_SIZE:,} bytes) into that folder, or leave "
            "data_dir unset to let TFDS download it."
        )
    return archive


def _check_archive(archive: Path) -> None:
    size = archive.stat().st_size
    if size != ARCHIVE_SIZE:
        raise DataFileError(
            f"{archive} has {size:,} bytes, expected {ARCHIVE_SIZE:,} "
            f"for {ARCHIVE} (the binary version). Download it again "
            f"from {URL}; pass verify_checksum=False only for an "
            "archive you generated yourself."
        )
    sha = hashlib.sha256()
    with archive.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    if sha.hexdigest() != ARCHIVE_SHA256:
        raise DataFileError(
            f"{archive}: sha256 is {sha.hexdigest()}, expected "
            f"{ARCHIVE_SHA256}. The file is damaged or not the "
            f"official archive: download it again from {URL}."
        )


def _parse_records(where: str, data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images ``(N, 32, 32, 3)`` and labels ``(N,)`` of one batch file's bytes."""
    if len(data) % _RECORD:
        raise DataFileError(
            f"{where}: {len(data)} bytes is not a whole number of "
            f"{_RECORD}-byte CIFAR-10 records"
        )
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, _RECORD)
    labels = records[:, 0]
    if labels.size and int(labels.max()) >= 10:
        raise DataFileError(f"{where}: label {int(labels.max())} out of range 0..9")
    # Each record stores the red, green then blue 32x32 planes (CHW).
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def _read_members(archive: Path) -> dict[str, bytes]:
    """The batch files' bytes, by member name."""
    wanted = {_PREFIX + n for n in _TRAIN_FILES + _TEST_FILES}
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
            f"It is probably truncated: download it again from {URL}."
        ) from e
    missing = sorted(wanted - contents.keys())
    if missing:
        raise DataFileError(
            f"{archive} lacks {', '.join(missing)}; is it the binary version "
            f"({ARCHIVE} from {URL})?"
        )
    return contents


def _read_archive(archive: Path) -> ImageDataset:
    """Parses ``cifar-10-binary.tar.gz`` with NumPy, in TFDS's example order."""
    contents = _read_members(archive)
    splits = {}
    for split, names in (("train", _TRAIN_FILES), ("test", _TEST_FILES)):
        parts = [_parse_records(f"{archive}:{_PREFIX}{n}", contents[_PREFIX + n]) for n in names]
        images = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        order = tfds_idx.tfds_order(images.shape[0], split)
        splits[split] = (images[order], labels[order])
    return tfds_idx.make_dataset(
        NAME, splits["train"], splits["test"],
        f"{archive} parsed with NumPy (checksum not verified; examples in TFDS order)",
        _SHAPE,
    )

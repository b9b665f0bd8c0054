"""Fashion-MNIST (Zalando Research, MIT licence) through TFDS's ``fashion_mnist`` builder.

Data: https://github.com/zalandoresearch/fashion-mnist

Local files are the four official gzipped IDX files. With ``data_dir=None``
the folder that ``apt-get install dataset-fashion-mnist`` fills,
:data:`DEFAULT_DIR`, is used when it holds all four. Debian re-wrapped those
``.gz`` files (the gzip header lost the stored file name and got a new
timestamp; the deflate stream and its CRC are unchanged), so their sha256
differs from the one TFDS registers. This module therefore checks the sha256
of the *decompressed* IDX data against the official values, then rebuilds the
original gzip header (file name and the original 2017 timestamp, which are
known) in a staging folder; the result is byte-for-byte the file TFDS
registers, and TFDS verifies it. Should a file hold the official data in a
gzip stream that cannot be turned back into the registered bytes, the IDX
files are parsed with NumPy instead (same arrays, same order).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

from . import DataFileError, ImageDataset, tfds_idx
from .tfds_idx import IdxFile, LocalIdx, PathLike

__all__ = ["DEFAULT_DIR", "FILES", "IDX_FILES", "LOCAL_FILES", "load", "read_files"]

log = logging.getLogger(__name__)

NAME = "fashion_mnist"  # the dataset's name here and TFDS's builder
HOMEPAGE = "https://github.com/zalandoresearch/fashion-mnist"
DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"

# The decompressed sha256 values were computed from the Debian package
# (dataset-fashion-mnist), whose payload re-wrapped into the original gzip
# header gives exactly the sha256 TFDS registers for each official .gz.
IDX_FILES: tuple[IdxFile, ...] = (
    IdxFile(
        "train-images-idx3-ubyte.gz", "train", "images", 0x0803, 60000,
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        1504176606,
    ),
    IdxFile(
        "train-labels-idx1-ubyte.gz", "train", "labels", 0x0801, 60000,
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        1504176606,
    ),
    IdxFile(
        "t10k-images-idx3-ubyte.gz", "test", "images", 0x0803, 10000,
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        1504176627,
    ),
    IdxFile(
        "t10k-labels-idx1-ubyte.gz", "test", "labels", 0x0801, 10000,
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        1504176627,
    ),
)
FILES = tuple(f.filename for f in IDX_FILES)
#: What ``--data-dir`` holds (the demos' ``--help``).
LOCAL_FILES = f"the four IDX .gz files, default {DEFAULT_DIR} if present"
_SIDE = 28
_SHAPE = (_SIDE, _SIDE, 1)
_DAMAGED_FIX = ("download it again, or reinstall it with `sudo apt-get install --reinstall "
                "dataset-fashion-mnist`.")


def load(
    data_dir: PathLike | None = None,
    *,
    tfds_data_dir: PathLike | None = None,
    verify_checksum: bool = True,
) -> ImageDataset:
    """Loads Fashion-MNIST: 60,000 training and 10,000 test images, 28x28 grey, 10 classes.

    Args:
        data_dir: folder holding the four official IDX files (:data:`FILES`).
            ``None``: :data:`DEFAULT_DIR` when it holds all four, otherwise the
            TFDS download.
        tfds_data_dir: where TFDS keeps built datasets and downloads; default
            ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``.
        verify_checksum: check the sha256 of each decompressed IDX file
            against the official one (and build through TFDS). ``False`` is
            for generated test files: the files are then only checked for a
            valid IDX structure and parsed with NumPy (TFDS's builder insists
            on the official files), with the examples put in TFDS's order.

    Returns:
        :class:`~demos.data.ImageDataset` with ``train_images`` (60000, 28, 28, 1)
        and ``test_images`` (10000, 28, 28, 1) float32 in [0, 1], labels (N,)
        int32 in 0..9, ``name="fashion_mnist"``. Built dataset, local files and
        download all give identical arrays.

    Raises:
        DataFileError: ``data_dir`` lacks a file, or a file is truncated, not
            IDX, or (with ``verify_checksum``) not the official contents; the
            message names the file and the fix. Also raised for a broken file
            in the default folder.
        DataUnavailableError: nothing built, nothing local and the download
            host unreachable (fails within seconds), or the download failed;
            the message names the fixes.
    """
    explicit = data_dir is not None
    folder = Path(data_dir if explicit else DEFAULT_DIR).expanduser()
    tfds_dir = tfds_idx.resolve_tfds_data_dir(tfds_data_dir)
    paths = _local_paths(folder, required=explicit)

    local = None
    if paths is not None and (explicit or not verify_checksum):
        local = read_files(paths, verify_checksum)
    if local is not None and not verify_checksum:
        return _from_arrays(local, f"IDX files in {folder} parsed with NumPy (checksums not "
                                   "verified; examples in TFDS order)")

    tfds = tfds_idx.import_tfds()

    def load_prepared(builder: Any) -> ImageDataset:
        note = f" (already built; files in {folder} verified)" if local else " (already built)"
        return tfds_idx.load_built(tfds, builder, NAME, _SHAPE,
                                   tfds_idx.describe(builder, tfds_dir) + note)

    def build(builder: Any) -> ImageDataset:
        if paths is None:
            return _build_without_local_files(tfds, builder, tfds_dir)
        files = local if local is not None else read_files(paths, verify_checksum=True)
        return _build_from_local(tfds, builder, files, folder, tfds_dir)

    return tfds_idx.load_or_build(tfds, NAME, tfds_dir, load_prepared, build)


def read_files(paths: dict[str, Path], verify_checksum: bool) -> dict[str, LocalIdx]:
    """Reads and checks the four files (``{file name: path}``); returns them by file name.

    Raises:
        DataFileError: a file is damaged, not the expected IDX file, (with
            ``verify_checksum``) not the official contents, or the images and
            labels of a split differ in number.
    """
    out = {}
    for spec in IDX_FILES:
        path = paths[spec.filename]
        raw, data = tfds_idx.gunzip_file(path, _DAMAGED_FIX)
        array = tfds_idx.parse_idx(path, data, spec, _SIDE)
        if verify_checksum:
            digest = hashlib.sha256(data).hexdigest()
            if digest != spec.sha256:
                raise DataFileError(
                    f"{path}: sha256 of the decompressed contents is {digest}, "
                    f"expected {spec.sha256} (the official Fashion-MNIST "
                    f"{spec.split} {spec.kind}, {spec.count} examples). "
                    "Replace the file with the official one from "
                    f"{HOMEPAGE} or `sudo apt-get install "
                    "dataset-fashion-mnist`; pass verify_checksum=False only "
                    "for files you generated yourself."
                )
        out[spec.filename] = LocalIdx(spec, path, raw, array)
    for split in ("train", "test"):
        images, labels = (out[s.filename] for s in IDX_FILES if s.split == split)
        if images.array.shape[0] != labels.array.shape[0]:
            raise DataFileError(
                f"{images.path} holds {images.array.shape[0]} images but "
                f"{labels.path} holds {labels.array.shape[0]} labels"
            )
    return out


def _fixes(tfds_dir: Path) -> str:
    return (
        "Fixes, any one of:\n"
        f"  1. go online once: TFDS downloads Fashion-MNIST and caches it in "
        f"{tfds_dir};\n"
        "  2. sudo apt-get install dataset-fashion-mnist  (puts the files in "
        f"{DEFAULT_DIR}, which is used automatically);\n"
        "  3. pass --data-dir DIR (data_dir=DIR in Python) pointing at a "
        f"folder that holds the four files {', '.join(FILES)} "
        f"(from {HOMEPAGE})."
    )


def _local_paths(folder: Path, required: bool) -> dict[str, Path] | None:
    paths = {name: folder / name for name in FILES}
    missing = [p for p in paths.values() if not p.is_file()]
    if not missing:
        return paths
    if required:
        raise DataFileError(
            "Fashion-MNIST data_dir "
            f"{folder} lacks {', '.join(str(p) for p in missing)}. Point "
            "--data-dir (data_dir=) at a folder holding all four files "
            f"{', '.join(FILES)} from {HOMEPAGE}, "
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


def _from_arrays(local: dict[str, LocalIdx], source: str) -> ImageDataset:
    """Builds the dataset from parsed IDX arrays, in TFDS's example order."""
    splits = {}
    for split in ("train", "test"):
        images, labels = (local[s.filename].array for s in IDX_FILES if s.split == split)
        order = tfds_idx.tfds_order(images.shape[0], split)
        splits[split] = (images[order], labels[order])
    return tfds_idx.make_dataset(NAME, splits["train"], splits["test"], source, _SHAPE)


def _build_from_local(
    tfds: Any, builder: Any, local: dict[str, LocalIdx], folder: Path, tfds_dir: Path
) -> ImageDataset:
    """Stages the verified files as TFDS's manual download and builds."""
    registered = tfds_idx.registered_url_infos(builder)
    tfds_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="fashion_mnist-manual-", dir=tfds_dir))
    try:
        for name, item in local.items():
            blob = tfds_idx.official_gzip_bytes(item)
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
                return _from_arrays(
                    local,
                    f"IDX files in {folder} (official contents, sha256 "
                    "verified) parsed with NumPy; examples in TFDS order",
                )
            (staging / name).write_bytes(blob)
        log.info("Building TFDS fashion_mnist in %s from %s", tfds_dir, folder)
        tfds_idx.prepare_from_manual_dir(tfds, builder, staging, tfds_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return tfds_idx.load_built(
        tfds, builder, NAME, _SHAPE,
        f"{tfds_idx.describe(builder, tfds_dir)}, built from the IDX files in {folder}",
    )


def _build_without_local_files(tfds: Any, builder: Any, tfds_dir: Path) -> ImageDataset:
    """From the four files in TFDS's own manual-download folder, else by TFDS's download."""
    fixes = _fixes(tfds_dir)
    manual = tfds_dir / "downloads" / "manual"
    if all((manual / name).is_file() for name in FILES):
        try:
            tfds_idx.prepare_from_manual_dir(tfds, builder, manual, tfds_dir)
        except Exception as e:
            raise DataFileError(
                f"TFDS rejected the Fashion-MNIST files in {manual} "
                f"({type(e).__name__}: {e}). Remove them, or pass that folder "
                f"as --data-dir instead.\n{fixes}"
            ) from e
        source = f"{tfds_idx.describe(builder, tfds_dir)}, built from the files in {manual}"
    else:
        url = next(
            iter(builder.url_infos or {}),
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        )
        tfds_idx.prepare_online(tfds, builder, tfds_dir, url, "Fashion-MNIST", fixes)
        source = f"{tfds_idx.describe(builder, tfds_dir)}, downloaded by TFDS"
    return tfds_idx.load_built(tfds, builder, NAME, _SHAPE, source)

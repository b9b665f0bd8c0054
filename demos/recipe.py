"""The reference recipe, and the settings that define a run: one place for both.

The demos train with the recipe of the reference code
(brohrer/sharpened_cosine_similarity_torch): batches of 1024, Adam with a
one-cycle learning rate peaking at 0.01 (torch's ``OneCycleLR`` defaults,
:mod:`demos.optim`) stepped every batch, 100 epochs a run, run ``N`` seeded
with ``seed + N``: :data:`REFERENCE`. Each demo's registry entry
(:mod:`demos.registry`) names its recipe, which gives the command line its
defaults; ``compare_frameworks.py`` trains and checks :data:`COMPARISON_RUNS`
runs of :data:`COMPARISON` per framework; the benchmark and the tests read
them here too.

Every run's record keeps its settings (:func:`run_settings`). Those in
:data:`RUN_SETTINGS` define the run: a checkpoint resumes only under the same
ones (:mod:`demos.resume`), and ``compare_frameworks.py`` compares only runs
that share :data:`COMPARED_SETTINGS`.

Importing it is cheap, standard library only: the results store reads the
registry, which reads the recipes, and the store's crash test writes runs
with ``python -S``. The functions import what they compute with.
"""

from __future__ import annotations

import argparse
import hashlib
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from .augment import AugmentPlan
    from .data import ImageDataset

__all__ = ["Recipe", "REFERENCE", "COMPARISON", "COMPARISON_RUNS", "RUN_SETTINGS",
           "COMPARED_SETTINGS", "SETTINGS_BEFORE_THEY_EXISTED", "saved_setting", "run_arch",
           "augmentation", "run_settings",
           "portable_source", "data_fingerprint"]


@dataclass(frozen=True)
class Recipe:
    """How a demo trains unless told otherwise (the command line's defaults).

    Attributes:
        epochs: epochs per run (the one-cycle schedule spans them all).
        batch_size: examples per batch.
        max_lr: the one-cycle schedule's peak learning rate.
        seed: the base seed; run ``N`` uses ``seed + N``.
        label_smoothing: the training loss's label smoothing ε in [0, 1)
            (cross-entropy against ``(1 - ε) one_hot + ε / classes``; 0: plain).
        random_crop: whether training images are randomly cropped (``--random-crop``).
        crop_padding: the zero padding around the image that the crops are cut
            from (``--crop-padding``; :data:`demos.augment.CIFAR_CROP_PADDING`, 4, by default).
        hflip: whether training images are mirrored with probability 0.5 (``--hflip``).
    """

    epochs: int
    batch_size: int
    max_lr: float
    seed: int = 0
    label_smoothing: float = 0.0
    random_crop: bool = False
    crop_padding: int = 4
    hflip: bool = False


#: The reference's recipe: batch 1024, Adam + one-cycle peaking at 0.01, 100 epochs a run.
REFERENCE = Recipe(epochs=100, batch_size=1024, max_lr=0.01)

#: The frameworks' comparison (issue 3): at least 5 runs of at least 5 epochs per framework.
COMPARISON = replace(REFERENCE, epochs=5)
COMPARISON_RUNS = 5

#: The settings that define a run (keys of a record's ``settings``), each with the
#: flag (or the data) that sets it, named when a checkpoint does not fit the command.
RUN_SETTINGS = {
    "epochs": "--epochs", "batch_size": "--batch-size", "max_lr": "--max-lr",
    "optimizer": None, "schedule": None, "pct_start": None,
    "steps_per_epoch": "--batch-size / the data", "train_examples": "--limit-train / the data",
    "test_examples": "--limit-test / the data", "dtype": None,
    "data_sha256": "--data-dir / --limit-train / --limit-test (the data differ)",
    "random_crop_padding": "--random-crop / --crop-padding", "hflip": "--hflip",
    "arch": "--arch", "label_smoothing": "--label-smoothing", "init_from": "--init-from",
}

#: The settings runs must share to be compared: all of :data:`RUN_SETTINGS` but the
#: data fingerprint, which the earliest records (results/fashion_mnist/v1/torch) lack,
#: and where the initial parameters come from, which ``compare_frameworks.py`` checks
#: per design (each framework's own, or torch's for both when paired).
COMPARED_SETTINGS = tuple(key for key in RUN_SETTINGS if key not in ("data_sha256", "init_from"))

#: What a record or checkpoint written before a setting existed means by its absence.
#: (A trainer's own settings, such as ``torch_compile``, are recorded but never
#: compared: they change float rounding, not the maths.)
SETTINGS_BEFORE_THEY_EXISTED = {"random_crop_padding": 0, "hflip": False, "arch": "reference",
                                "label_smoothing": 0.0}


def run_arch(record: dict) -> str:
    """The ``--arch`` a saved run or checkpoint record was trained with (``reference`` before
    records said)."""
    return saved_setting(record, "arch")


def saved_setting(record: dict, key: str):
    """A record's (or checkpoint's) setting ``key``, with what its absence means.

    Records written before a setting existed lack it: the augmentation was off
    (:data:`SETTINGS_BEFORE_THEY_EXISTED`), and a run started from its own
    framework's initial parameters (``init_from`` = the record's framework).
    """
    settings = record.get("settings") or {}
    if key in settings:
        return settings[key]
    if key == "init_from":
        return record.get("framework")
    return SETTINGS_BEFORE_THEY_EXISTED.get(key)


def augmentation(args: argparse.Namespace, data: ImageDataset, seed: int) -> AugmentPlan:
    """The run's augmentation as ``--random-crop`` / ``--hflip`` ask (a plan doing nothing without them)."""
    from .augment import AugmentPlan

    return AugmentPlan(len(data.train_labels), tuple(data.train_images.shape[1:3]), seed,
                       crop_padding=args.crop_padding if args.random_crop else 0,
                       hflip=args.hflip)


def run_settings(args: argparse.Namespace, data: ImageDataset, seed: int, data_sha256: str) -> dict:
    """The ``settings`` of a run's record: everything that decides its numbers.

    ``random_crop_padding`` (0: no crop) and ``hflip`` record the augmentation,
    ``arch`` the network (``--arch``), ``parameters`` its parameter count and
    ``label_smoothing`` the training loss's ε,
    ``init_from`` the framework whose initialisation drew the starting
    parameters (``--init-from``); the trainer adds its own
    (:meth:`demos.trainers.Trainer.framework_settings`).
    """
    from .batch_plan import BatchPlan
    from .optim import OneCycle

    plan = BatchPlan(len(data.train_labels), args.batch_size, seed)
    schedule = OneCycle(max_lr=args.max_lr, total_steps=args.epochs * plan.steps_per_epoch)
    return {
        "epochs": args.epochs, "batch_size": args.batch_size, "max_lr": args.max_lr,
        "optimizer": "adam", "schedule": "one-cycle (torch OneCycleLR defaults)",
        "pct_start": schedule.pct_start, "steps_per_epoch": plan.steps_per_epoch,
        "train_examples": len(data.train_labels), "test_examples": len(data.test_labels),
        "dtype": "float32", "data_source": portable_source(data.source), "data_sha256": data_sha256,
        **augmentation(args, data, seed).settings(), "init_from": args.init_from,
        "arch": args.arch, "parameters": args.parameters, "label_smoothing": args.label_smoothing,
    }


def portable_source(source: str, home: str | None = None) -> str:
    """``source`` (an ``ImageDataset.source``) with the home folder written ``~``.

    Records are shared (``results/`` is committed), so they name TFDS's folder
    ``~/tensorflow_datasets`` rather than one user's home; the data's identity
    is ``data_sha256``. ``home`` defaults to :meth:`pathlib.Path.home`; a
    folder that only starts like it (``/rooted`` for ``/root``) is kept.

    >>> portable_source("TFDS fashion_mnist 3.0.1 in /root/tensorflow_datasets (already built)",
    ...                 home="/root")
    'TFDS fashion_mnist 3.0.1 in ~/tensorflow_datasets (already built)'
    >>> portable_source("NumPy arrays in /rooted/x", home="/root")
    'NumPy arrays in /rooted/x'
    """
    home = (str(Path.home()) if home is None else home).rstrip("/")
    if not home:
        return source
    return re.sub(re.escape(home) + r"(?=/|[\s),;]|$)", "~", source)


def data_fingerprint(data: ImageDataset) -> str:
    """sha256 over the training and test arrays as used (after ``--limit-*``).

    Stored in every run's settings; a checkpoint resumes only on the same data.
    """
    import numpy as np

    digest = hashlib.sha256()
    for array in (data.train_images, data.train_labels, data.test_images, data.test_labels):
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()

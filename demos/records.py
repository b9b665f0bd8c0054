"""A run's record: the JSON object the demos save per completed run, and its checks.

Record schema (``schema`` = 1)::

    {"schema": 1, "dataset": "fashion_mnist", "version": "v1",
     "framework": "torch", "run_index": 0, "seed": 0,
     "settings": {"epochs": 100, "batch_size": 1024, "max_lr": 0.01, ...},
     "epochs": [{"epoch": 1, "train_loss": ..., "train_accuracy": ...,
                 "test_loss": ..., "test_accuracy": ...,
                 "test_error": ...,      # percent, 100 * (1 - test_accuracy)
                 "learning_rate": ..., "seconds": ...}, ...],
     "started": "<iso8601>", "finished": "<iso8601>",
     "packages": {"torch": "2.13.0", ...},
     "host": {"cpu": ..., "cores": ..., "device": ...},
     "resumed": [{"after_epoch": 58, "at": ..., "code": ..., "host": {...}, ...}, ...]}

The keys ``schema``, ``dataset``, ``version``, ``framework``, ``run_index``,
``seed``, ``settings`` and ``epochs`` (non-empty, each entry with all the
per-epoch keys above) are required; ``started``, ``finished``, ``packages``
and ``host`` (the machine the run started on) are recommended and any extra keys
are kept as they are; a resumed run lists each resumption in ``resumed``, with the
machine it resumed on (records before 2026-12-06 lack that ``host``).
``settings`` holds what :func:`demos.recipe.run_settings` records.

The datasets are those of :mod:`demos.registry`, the frameworks those of
:mod:`demos.trainers`. Cheap to import (no torch / jax / tensorflow).
"""

from __future__ import annotations

import re
from typing import Any

from . import registry, trainers

__all__ = [
    "SCHEMA_VERSION",
    "REQUIRED_KEYS",
    "EPOCH_KEYS",
    "validate_version",
    "validate_dataset",
    "validate_framework",
    "validate_record",
]

#: Value of the ``schema`` field written by this version of the store.
SCHEMA_VERSION = 1

#: Top-level keys every record must have.
REQUIRED_KEYS: tuple[str, ...] = (
    "schema", "dataset", "version", "framework", "run_index", "seed",
    "settings", "epochs",
)

#: Keys every entry of ``record["epochs"]`` must have (all numbers).
EPOCH_KEYS: tuple[str, ...] = (
    "epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy",
    "test_error", "learning_rate", "seconds",
)

_VERSION_RE = re.compile(r"[A-Za-z0-9_]{1,64}")


def validate_version(version: str) -> str:
    """Check that ``version`` is a safe results-folder name.

    A version is 1 to 64 ASCII letters, digits or underscores (``v1``,
    ``v_37``), so it can never escape the results folder or name a hidden or
    absolute path.

    Args:
        version: the version label given by the user.

    Returns:
        ``version`` unchanged.

    Raises:
        TypeError: ``version`` is not a ``str``.
        ValueError: ``version`` has another character or length; the message
            names the argument, what is allowed and what was received.
    """
    if not isinstance(version, str):
        raise TypeError(
            f"version must be a str of 1-64 letters, digits or underscores, "
            f"got {type(version).__name__} {version!r}"
        )
    if not _VERSION_RE.fullmatch(version):
        raise ValueError(
            "invalid version: it must be 1-64 characters, each an ASCII "
            "letter, digit or underscore (e.g. 'v1', 'v_37'); "
            f"got {version!r}"
        )
    return version


def validate_dataset(dataset: str) -> str:
    """Check that ``dataset`` is a dataset of :mod:`demos.registry`.

    Args:
        dataset: dataset name, e.g. ``"fashion_mnist"``.

    Returns:
        ``dataset`` unchanged.

    Raises:
        ValueError: unknown dataset; the message lists the known ones.
    """
    if not isinstance(dataset, str) or dataset not in registry.names():
        raise ValueError(
            f"invalid dataset: must be one of {', '.join(registry.names())}; "
            f"got {dataset!r}"
        )
    return dataset


def validate_framework(framework: str) -> str:
    """Check that ``framework`` is a framework of :mod:`demos.trainers`.

    Args:
        framework: framework name, ``"torch"`` or ``"jax"``.

    Returns:
        ``framework`` unchanged.

    Raises:
        ValueError: unknown framework; the message lists the known ones.
    """
    if not isinstance(framework, str) or framework not in trainers.FRAMEWORKS:
        raise ValueError(
            f"invalid framework: must be one of {', '.join(trainers.FRAMEWORKS)}; "
            f"got {framework!r}"
        )
    return framework


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def validate_record(record: Any) -> list[str]:
    """List what is wrong with a run record (empty list: it is valid).

    Checks the required keys and their types: ``schema`` == 1, known
    ``dataset`` and ``framework``, a valid ``version``, ``run_index`` an int
    >= 0, ``seed`` an int, ``settings`` a dict and ``epochs`` a non-empty list
    of dicts that each have all of :data:`EPOCH_KEYS` as numbers (NaN and
    infinities are allowed, e.g. for a diverged run) with strictly increasing
    ``epoch`` numbers >= 1.

    Args:
        record: the decoded record (anything; non-dicts are reported).

    Returns:
        A list of human-readable problems; empty when the record is valid.
    """
    if not isinstance(record, dict):
        return [f"the record is a JSON {type(record).__name__}, not an object"]
    problems: list[str] = []
    missing = [k for k in REQUIRED_KEYS if k not in record]
    if missing:
        problems.append(f"missing key(s) {', '.join(missing)}")
    if "schema" in record and record["schema"] != SCHEMA_VERSION:
        problems.append(
            f"schema is {record['schema']!r}, this code reads schema "
            f"{SCHEMA_VERSION}"
        )
    for key, check in (("dataset", validate_dataset),
                       ("framework", validate_framework),
                       ("version", validate_version)):
        if key in record:
            try:
                check(record[key])
            except (TypeError, ValueError) as exc:
                problems.append(str(exc))
    if "run_index" in record and not (
            _is_int(record["run_index"]) and record["run_index"] >= 0):
        problems.append(
            f"run_index must be an int >= 0, got {record['run_index']!r}")
    if "seed" in record and not _is_int(record["seed"]):
        problems.append(f"seed must be an int, got {record['seed']!r}")
    if "settings" in record and not isinstance(record["settings"], dict):
        problems.append("settings must be an object")
    if "epochs" in record:
        problems += _epochs_problems(record["epochs"])
    return problems


def _epochs_problems(epochs: Any) -> list[str]:
    """What is wrong with a record's ``epochs`` (see :func:`validate_record`)."""
    if not isinstance(epochs, list) or not epochs:
        return ["epochs must be a non-empty list"]
    problems: list[str] = []
    previous = 0
    for i, entry in enumerate(epochs):
        if not isinstance(entry, dict):
            problems.append(f"epochs[{i}] is not an object")
            continue
        lacking = [k for k in EPOCH_KEYS if k not in entry]
        if lacking:
            problems.append(f"epochs[{i}] lacks key(s) {', '.join(lacking)}")
        not_numbers = [k for k in EPOCH_KEYS if k in entry and not _is_number(entry[k])]
        if not_numbers:
            problems.append(f"epochs[{i}] has non-numeric {', '.join(not_numbers)}")
        number = entry.get("epoch")
        if _is_int(number):
            if number <= previous:
                problems.append(
                    f"epochs[{i}] has epoch {number}, expected > "
                    f"{previous} (1-based, increasing)")
            previous = number
        elif "epoch" in entry:
            problems.append(f"epochs[{i}]['epoch'] must be an int")
    return problems

"""Crash-safe store for the demos' per-run training records.

Every completed training run is one JSON file that is written once and never
rewritten::

    results/<dataset>/<version>/<framework>/run_<NNNN>.json

``NNNN`` is the 0-based run index, zero-padded to four digits (``run_0000``,
``run_0001``, ...; index 10000 and up simply gets more digits).

Writing a run (:func:`save_run`, through :func:`demos.atomic.create_file`) goes
through a hidden temp file in the same folder that is flushed and fsynced,
then hard-linked to its final name, which fails instead of replacing an
existing file.  A process killed at any moment therefore leaves either the
complete new run file or none at all (at worst a stray hidden
``.tmp-run_*.tmp`` file, which every reader ignores), and the files of
earlier runs are never opened for writing.

Readers (:func:`load_runs`, :func:`check_appendable`) never modify, move or
delete anything.  A corrupt or foreign file is reported with its path and left
for the user to move away.

Arguments mean the same in every function: ``dataset`` a dataset of
:mod:`demos.registry`, ``framework`` a framework of :mod:`demos.trainers`,
``version`` a version label (:func:`demos.records.validate_version`),
``results_dir`` the results root (``None``: :data:`RESULTS_DIR`); invalid
names raise ``ValueError``.

A record's schema and its checks are in :mod:`demos.records`, the statistics
of the runs in :mod:`demos.stats`. Cheap to import (no torch / jax /
tensorflow).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Iterable

from . import atomic, registry
from .records import validate_dataset, validate_framework, validate_record, validate_version
from .trainers import FRAMEWORKS

__all__ = [
    "RESULTS_DIR",
    "ResultsError",
    "run_dir",
    "state_dir",
    "run_file_name",
    "next_run_index",
    "save_run",
    "load_runs",
    "list_versions",
    "check_appendable",
]

#: The repository's results folder (``<repo>/results``); the default for every
#: ``results_dir=None`` argument.
RESULTS_DIR: Path = Path(__file__).resolve().parent.parent / "results"

_RUN_FILE_RE = re.compile(r"run_([0-9]{4,})\.json")
_MOVE_AWAY_HINT = (
    "Move the file(s) out of the results folder (for example to a "
    "'quarantine' folder elsewhere), then run again; nothing was changed."
)


class ResultsError(RuntimeError):
    """A results file is corrupt, foreign or would be overwritten.

    The message names the offending path(s); they are also available as the
    ``paths`` attribute (a list of :class:`pathlib.Path`).
    """

    def __init__(self, message: str, paths: Iterable[os.PathLike | str] = ()):
        super().__init__(message)
        self.paths = [Path(p) for p in paths]


# --------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------

def _root(results_dir: os.PathLike | str | None) -> Path:
    return RESULTS_DIR if results_dir is None else Path(results_dir)


def run_dir(dataset: str, version: str, framework: str,
            results_dir: os.PathLike | str | None = None) -> Path:
    """Folder that holds the run files of one dataset/version/framework.

    Returns:
        ``<results_dir>/<dataset>/<version>/<framework>`` (it may not exist).
    """
    validate_dataset(dataset)
    validate_version(version)
    validate_framework(framework)
    return _root(results_dir) / dataset / version / framework


def state_dir(kind: str, dataset: str, version: str, framework: str,
              results_dir: os.PathLike | str | None = None) -> Path:
    """``<results_dir>/<dataset>/<version>/<kind>/<framework>``: the demos' working state
    next to the run folder (``checkpoint``, ``claims``; validated names)."""
    return run_dir(dataset, version, framework, results_dir).parent / kind / framework


def run_file_name(run_index: int) -> str:
    """File name of a run: ``run_<NNNN>.json`` (index zero-padded to 4).

    Args:
        run_index: 0-based run index.

    Returns:
        The file name, e.g. ``run_0007.json``.

    Raises:
        ValueError: ``run_index`` is not an int >= 0.
    """
    if not isinstance(run_index, int) or isinstance(run_index, bool) or run_index < 0:
        raise ValueError(f"run_index must be an int >= 0, got {run_index!r}")
    return f"run_{run_index:04d}.json"


def _is_temp_name(name: str) -> bool:
    """Hidden files and ``*.tmp`` are in-progress writes or OS litter."""
    return name.startswith(".") or name.endswith(".tmp")


def _run_index_of(name: str) -> int | None:
    """Index of a canonical run file name, else ``None``."""
    m = _RUN_FILE_RE.fullmatch(name)
    if m is None:
        return None
    index = int(m.group(1))
    return index if name == run_file_name(index) else None


def _scan(directory: Path) -> tuple[list[tuple[int, Path]], list[tuple[Path, str]]]:
    """Sort the entries of a run folder into run files and foreign entries.

    Returns ``(runs, foreign)``: ``runs`` is ``[(index, path)]`` sorted by
    index, ``foreign`` is ``[(path, reason)]``.  Temp files are left out.
    """
    runs: list[tuple[int, Path]] = []
    foreign: list[tuple[Path, str]] = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return runs, foreign
    except NotADirectoryError:
        return runs, [(directory, "should be a folder of run files")]
    for entry in entries:
        name = entry.name
        if _is_temp_name(name):
            continue
        path = Path(entry.path)
        index = _run_index_of(name)
        if index is None:
            foreign.append((path, "unexpected file: a run folder should only "
                                  "hold run_<NNNN>.json files"))
        elif not entry.is_file():
            foreign.append((path, "is not a regular file"))
        else:
            runs.append((index, path))
    runs.sort()
    return runs, foreign


def next_run_index(dataset: str, version: str, framework: str,
                   results_dir: os.PathLike | str | None = None) -> int:
    """Index for the next run: 1 + the highest existing run index, 0 if none.

    Only file names are looked at (a corrupt ``run_0003.json`` still takes
    index 3); temp files are ignored.  Gaps are not filled.
    """
    runs, _ = _scan(run_dir(dataset, version, framework, results_dir))
    return runs[-1][0] + 1 if runs else 0


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------

def _json_default(obj: Any) -> Any:
    # numpy / torch / jax scalars and arrays all provide tolist().
    tolist = getattr(obj, "tolist", None)
    if callable(tolist):
        return tolist()
    raise TypeError(
        f"Object of type {type(obj).__name__} is not JSON serializable")


def save_run(record: dict, results_dir: os.PathLike | str | None = None) -> Path:
    """Write one completed run as a new file, atomically, never overwriting.

    The record is serialised first (nothing touches the disk if that fails),
    then written with :func:`demos.atomic.create_file`: a hidden temp file in
    the destination folder, flushed and fsynced, hard-linked to
    ``run_<NNNN>.json`` (a link fails rather than replacing an existing
    file; without hard links, an existence check and ``os.rename``).  A
    process killed at any point leaves either the complete run file or none
    (plus possibly a stray hidden temp file that readers ignore); other
    files are not touched.

    numpy / torch / jax scalars or arrays in the record are converted with
    their ``tolist()``.  NaN and infinities are written as JSON ``NaN`` /
    ``Infinity`` (Python's json reads them back).  The caller's dict is not
    modified.

    Args:
        record: the run record (:mod:`demos.records`); its ``dataset``,
            ``version``, ``framework`` and ``run_index`` choose the file.

    Returns:
        Path of the new run file.

    Raises:
        ValueError: the record is invalid (message lists every problem).
        TypeError: the record holds something that cannot be made JSON.
        ResultsError: the run file already exists (it is left untouched), or
            the destination is not a folder.
        OSError: the disk write itself failed.
    """
    text = json.dumps(record, indent=1, default=_json_default,
                      ensure_ascii=False, allow_nan=True)
    # Validate what will actually be on disk (after tolist() conversions).
    written = json.loads(text)
    problems = validate_record(written)
    if problems:
        raise ValueError("invalid run record: " + "; ".join(problems))
    directory = run_dir(written["dataset"], written["version"],
                        written["framework"], results_dir)
    final = directory / run_file_name(written["run_index"])
    if os.path.lexists(final):
        raise ResultsError(
            f"{final} already exists; a run file is never overwritten "
            f"(use next_run_index() to pick a free index)", [final])
    atomic.make_dirs(directory)
    if not directory.is_dir():
        raise ResultsError(f"{directory} exists but is not a folder", [directory])
    try:
        atomic.create_file(final, (text + "\n").encode("utf-8"))
    except FileExistsError:
        raise ResultsError(
            f"{final} already exists (written by another process?); "
            f"a run file is never overwritten", [final]) from None
    return final


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------

def _read_run(path: Path, dataset: str, version: str, framework: str,
              index: int) -> tuple[dict | None, str | None]:
    """Load and check one run file; returns ``(record, None)`` or ``(None, why)``."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror or exc})"
    try:
        record = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return None, f"is not UTF-8 text ({exc})"
    except json.JSONDecodeError as exc:
        return None, f"is not valid JSON ({exc})"
    problems = validate_record(record)
    if not problems:
        where = {"dataset": dataset, "version": version,
                 "framework": framework, "run_index": index}
        mismatched = [f"{k} is {record[k]!r} but the file's location says "
                      f"{v!r}" for k, v in where.items() if record[k] != v]
        problems.extend(mismatched)
    if problems:
        return None, "is not a valid run record: " + "; ".join(problems)
    return record, None


def _is_version(name: str) -> bool:
    try:
        validate_version(name)
    except ValueError:
        return False
    return True


def _problem_message(problems: list[tuple[Path, str]], hint: str) -> str:
    lines = [f"{path} {why}" for path, why in problems]
    if len(lines) == 1:
        return f"{lines[0]}. {hint}"
    return (f"{len(lines)} bad files in the results folder:\n  "
            + "\n  ".join(lines) + f"\n{hint}")


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _select(value: str | None, allowed: tuple[str, ...], check) -> tuple[str, ...]:
    return allowed if value is None else (check(value),)


def load_runs(dataset: str | None = None, version: str | None = None,
              framework: str | None = None,
              results_dir: os.PathLike | str | None = None, *,
              strict: bool = True) -> list[dict]:
    """Load every run of one version, optionally for one dataset / framework.

    Read-only: never modifies, moves or deletes a file.  Temp files (names
    starting with ``.`` or ending ``.tmp``) are ignored, so a run that is
    being written right now is simply not there yet.

    Each run file must be valid JSON, pass :func:`validate_record`, and its
    ``dataset`` / ``version`` / ``framework`` / ``run_index`` must match its
    location; anything else in a run folder (another file name, a folder) is
    foreign.

    Args:
        dataset: ``None`` for all datasets.
        version: required.
        framework: ``None`` for every framework.
        strict: if true, any corrupt or foreign file raises; if false, each
            one is skipped with a warning on stderr naming its path.

    Returns:
        The records, sorted by ``(dataset, framework, run_index)``; an empty
        list when there are none.

    Raises:
        TypeError: no version given.
        ValueError: invalid dataset, version or framework.
        ResultsError: (``strict=True``) a corrupt or foreign file; the
            message names every such path.
    """
    if version is None:
        raise TypeError("load_runs() needs a version, e.g. load_runs(version='v1')")
    validate_version(version)
    root = _root(results_dir)
    records: list[dict] = []
    problems: list[tuple[Path, str]] = []
    for ds in _select(dataset, registry.names(), validate_dataset):
        for fw in _select(framework, FRAMEWORKS, validate_framework):
            runs, foreign = _scan(root / ds / version / fw)
            problems.extend(foreign)
            for index, path in runs:
                record, why = _read_run(path, ds, version, fw, index)
                if record is None:
                    problems.append((path, why))
                else:
                    records.append(record)
    if problems:
        if strict:
            raise ResultsError(_problem_message(problems, _MOVE_AWAY_HINT),
                               [p for p, _ in problems])
        for path, why in problems:
            _warn(f"skipping {path}: {why}")
    records.sort(key=lambda r: (r["dataset"], r["framework"], r["run_index"]))
    return records


def list_versions(dataset: str | None = None,
                  results_dir: os.PathLike | str | None = None) -> list[str]:
    """Version folders present under the results root (for messages / CLIs).

    Returns:
        Sorted, de-duplicated names of the valid version folders found, for
        ``dataset`` (``None``: all datasets).
    """
    root = _root(results_dir)
    found: set[str] = set()
    for ds in _select(dataset, registry.names(), validate_dataset):
        try:
            entries = list(os.scandir(root / ds))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            if entry.is_dir() and _is_version(entry.name):
                found.add(entry.name)
    return sorted(found)


def check_appendable(dataset: str, version: str, framework: str,
                     results_dir: os.PathLike | str | None = None) -> None:
    """Refuse to add runs next to a corrupt or foreign file.

    Demos call this before training so that a damaged results folder is
    noticed before hours of compute rather than after.  Read-only; returns
    when every file in the run folder is a valid run (or there is no folder yet).

    Raises:
        ResultsError: a corrupt or foreign file is present; the message
            names each path and tells the user to move it away.
    """
    directory = run_dir(dataset, version, framework, results_dir)
    runs, problems = _scan(directory)
    for index, path in runs:
        _, why = _read_run(path, dataset, version, framework, index)
        if why is not None:
            problems.append((path, why))
    if problems:
        raise ResultsError(
            _problem_message(
                problems,
                "Refusing to add runs next to it. " + _MOVE_AWAY_HINT),
            [p for p, _ in problems])

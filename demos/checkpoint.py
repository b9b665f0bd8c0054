"""Per-epoch checkpoints of the run in progress, so that a stopped demo resumes where it was.

After every completed epoch but the last, the demo saves the run's state with
the framework's own tools, next to (not inside) the results::

    results/<dataset>/<version>/checkpoint/<framework>/      (git-ignored)
        run_<NNNN>_epoch_<EEEE>/      run NNNN after its epoch EEEE (1-based); one per run in progress
            meta.json                 {"format": 1, "framework", "run_index", "epoch", "global_step",
                                       "record": the run's record so far: seed, settings (data
                                       fingerprint included), per-epoch numbers, start time...}
            <STATE_NAME>              the trainer's own state, written by its save_state:
                                      torch: state.pt, torch.save({"model", "optimizer",
                                      "scheduler" state dicts, "torch_rng" [, "cuda_rng"]});
                                      JAX: state/, orbax StandardCheckpointer of {"params": the
                                      nnx.State, "opt_state": the optax state, step count included}
        failed_run_<NNNN>.json        run NNNN was abandoned on a non-finite loss (not a result; its
                                      seed is not tried again)
        .lock                         shared flock()s of the demos training this version and
                                      framework, which keep older demos (exclusive lock) out
        .tmp-* / .trash-*             a killed demo's half-written / half-deleted checkpoint; removed
                                      by the next demo once no live worker claims the run, or by
                                      the worker that claims the run next

Nothing else is needed to resume: the batch order of epoch ``e`` is a pure
function of ``(seed, e)`` (:class:`demos.batch_plan.BatchPlan`), the one-cycle
position is in the optimizer / scheduler state, and neither network draws
random numbers after its initialisation (the RNG states are saved anyway).

Crash safety: a checkpoint is written into a hidden ``.tmp-*`` folder, every
file in it is fsynced, then the folder is renamed to its final name (an
atomic step) and the parent folder is fsynced; only then are older
checkpoints deleted, each first renamed to a hidden ``.trash-*`` name. A
process killed at any moment therefore leaves the previous checkpoint or the
new one complete under a final name, plus perhaps hidden leftovers; a
Ctrl-C or SIGTERM during the write is held back until it is complete. The
checkpoints live outside ``<framework>/`` because :mod:`demos.results_store`
reports anything but run files there as foreign.

Several workers (demo processes, on one machine or on several sharing the
folder) may each have a run in progress here: each run is claimed by one
worker (:mod:`demos.claims`), a worker writes and deletes only the checkpoints
of the run it claims and checks before each write that it still owns it. The
``.lock`` file serves one purpose only: demos of older versions of this code
take it exclusively and so cannot start while new workers hold it shared
(locally; NFS need not honour it, and the claims do not rely on it).

This module keeps the folder (names, claims, atomic renames); the state in
it is the trainer's business: the framework's trainer class
(:func:`demos.trainers.trainer_class`) writes and reads it
(``save_state`` / ``load_state``) and names it (``STATE_NAME``), so only the
framework being checkpointed is imported.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import atomic, results_store, trainers
from .claims import DEFAULT_LEASE_SECONDS, RunClaims

__all__ = ["FORMAT", "Checkpoint", "CheckpointDir", "CheckpointError", "checkpoint_dir"]

#: Value of ``meta.json``'s ``format`` field written by this code.
FORMAT = 1

_ENTRY_RE = re.compile(r"run_([0-9]{4,})_epoch_([0-9]{4,})")
_LEFTOVER_RUN_RE = re.compile(r"\.(?:tmp|trash)-(?:failed_)?run_([0-9]{4,})")
_FAILED_RE = re.compile(r"failed_run_([0-9]{4,})\.json")
_LEFTOVER_PREFIXES = (".tmp-", ".trash-")
_LOCK_NAME = ".lock"


class CheckpointError(RuntimeError):
    """A checkpoint is damaged, foreign, locked or does not fit the command line.

    The message names the path(s) and what to do; they are also in ``paths``.
    """

    def __init__(self, message: str, paths=()):
        super().__init__(message)
        self.paths = [Path(p) for p in paths]


@dataclass(frozen=True)
class Checkpoint:
    """One complete checkpoint on disk: run ``run_index`` after epoch ``epoch``."""

    path: Path
    run_index: int
    epoch: int
    global_step: int
    framework: str
    record: dict


def checkpoint_dir(dataset: str, version: str, framework: str,
                   results_dir: os.PathLike | str | None = None) -> Path:
    """``<results_dir>/<dataset>/<version>/checkpoint/<framework>`` (validated names)."""
    return results_store.state_dir("checkpoint", dataset, version, framework, results_dir)


def _entry_name(run_index: int, epoch: int) -> str:
    return f"run_{run_index:04d}_epoch_{epoch:04d}"


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=1, allow_nan=True) + "\n").encode("utf-8")


def _discard(path: Path) -> None:
    """Delete a checkpoint folder: rename it to a hidden name first, so no half-deleted
    folder is ever left under a checkpoint's name."""
    trash = atomic.hidden_name(path, "trash")
    try:
        os.rename(path, trash)
    except FileNotFoundError:
        return
    atomic.fsync_dir(path.parent)
    shutil.rmtree(trash, ignore_errors=True)


def _vanished(path: Path) -> bool:
    """Whether ``path`` is gone (another process renamed it away); any other error: no."""
    try:
        os.lstat(path)
    except FileNotFoundError:
        return True
    except OSError:
        pass
    return False


# --------------------------------------------------------------------------
# The folder of one dataset / version / framework
# --------------------------------------------------------------------------

class CheckpointDir:
    """The checkpoints of one dataset / version / framework (see the module docstring).

    Args:
        dataset, version, framework: as in :mod:`demos.results_store` (validated).
        results_dir: results root; ``None`` means the repository's ``results/``.
        lease_seconds: the lease of this process's claims (:class:`demos.claims.RunClaims`).
    """

    def __init__(self, dataset: str, version: str, framework: str,
                 results_dir: os.PathLike | str | None = None, *,
                 lease_seconds: float = DEFAULT_LEASE_SECONDS):
        self.framework = framework
        self.path = checkpoint_dir(dataset, version, framework, results_dir)
        #: Which worker trains which run; the claims this process holds.
        self.claims = RunClaims(dataset, version, framework, results_dir,
                                lease_seconds=lease_seconds)
        self._lock_fd: int | None = None

    @property
    def _trainer_class(self) -> type[trainers.Trainer]:
        # Any object with the class's state attributes can be saved and loaded
        # through it, and its STATE_NAME is known before a trainer exists.
        return trainers.trainer_class(self.framework)

    # -- joining -----------------------------------------------------------

    def acquire(self) -> None:
        """Join the folder as one of its workers: a shared ``flock`` on ``.lock`` (it keeps
        out older demos, which lock it exclusively), and remove the hidden leftovers of
        killed demos whose runs no live worker claims.

        Raises:
            CheckpointError: an older demo holds the lock exclusively.
        """
        if self._lock_fd is not None:
            return
        atomic.make_dirs(self.path)
        lock = self.path / _LOCK_NAME
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no lock
            fcntl = None
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise CheckpointError(
                    f"a demo of an older version of this code is training this version and "
                    f"framework right now (it holds {lock} exclusively). Wait for it to finish "
                    "or stop it, or use another version.", [lock]) from None
            except OSError:  # e.g. ENOLCK: no locks here (NFS); the claims do not need them
                pass
        self._lock_fd = fd
        self.remove_leftovers()

    def remove_leftovers(self, run_index: int | None = None) -> None:
        """Hidden half-written / half-deleted entries of killed demos: those of run
        ``run_index``, which this process has just claimed (a run it took over from a
        dead worker after joining), or, ``None``, of every run no live worker claims."""
        # Listed before the claims are read: a run claimed in between, whose checkpoint a
        # live worker has begun to write, must not pass for a dead worker's.
        entries = list(os.scandir(self.path))
        live = self.claims.live_runs() if run_index is None else set()
        for entry in entries:
            if not entry.name.startswith(_LEFTOVER_PREFIXES):
                continue
            match = _LEFTOVER_RUN_RE.match(entry.name)
            run = int(match[1]) if match else None
            if run in live if run_index is None else run != run_index:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                try:
                    os.unlink(entry.path)
                except FileNotFoundError:
                    pass

    def release(self) -> None:
        """Release the runs this process still claims (left to be resumed), and the lock."""
        self.claims.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- reading -----------------------------------------------------------

    def _entries(self) -> tuple[list[tuple[int, int, Path]], list[int]]:
        checkpoints, failed, foreign = [], [], []
        try:
            entries = list(os.scandir(self.path))
        except FileNotFoundError:
            return [], []
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue
            match = _ENTRY_RE.fullmatch(name)
            if match and entry.is_dir(follow_symlinks=False) and name == _entry_name(
                    int(match[1]), int(match[2])):
                checkpoints.append((int(match[1]), int(match[2]), Path(entry.path)))
                continue
            match = _FAILED_RE.fullmatch(name)
            if match and entry.is_file(follow_symlinks=False):
                failed.append(int(match[1]))
                continue
            if not _vanished(Path(entry.path)):  # else renamed away since the listing
                foreign.append(Path(entry.path))
        if foreign:
            raise CheckpointError(
                f"unexpected entries in the checkpoint folder {self.path}: "
                f"{', '.join(str(p) for p in sorted(foreign))}. Move them out of the "
                "results folder, then run again; nothing was changed.", foreign)
        checkpoints.sort()
        return checkpoints, sorted(failed)

    def latest(self, run_index: int | None = None) -> Checkpoint | None:
        """The newest complete checkpoint of run ``run_index``, or ``None``. Read-only.

        ``run_index=None``: of the only run that has checkpoints.

        Raises:
            CheckpointError: a foreign entry, a damaged newest checkpoint (each
                named, to be moved away), or (``run_index=None``) checkpoints of
                more than one run.
        """
        tried = None
        while True:
            checkpoints, _ = self._entries()
            runs = sorted({run for run, _, _ in checkpoints})
            if run_index is None and len(runs) > 1:
                paths = [p for _, _, p in checkpoints]
                raise CheckpointError(
                    f"{self.path} holds checkpoints of several runs ({', '.join(map(str, runs))}): "
                    f"{', '.join(map(str, paths))}; name the run to resume.", paths)
            checkpoints = [c for c in checkpoints if run_index in (None, c[0])]
            if not checkpoints:
                return None
            newest = checkpoints[-1]
            try:
                return self._read(newest[2], newest[0], newest[1])
            except CheckpointError:
                # A writer in another process may have removed it (renamed away whole)
                # since the listing: a newer checkpoint, or none, is there now. Look again,
                # once per checkpoint gone (a stale listing must not make this spin).
                if newest == tried or not _vanished(newest[2]):
                    raise
                tried = newest

    def runs_in_progress(self) -> set[int]:
        """Indices of the runs that have a checkpoint."""
        return {run for run, _, _ in self._entries()[0]}

    def _read(self, path: Path, run_index: int, epoch: int) -> Checkpoint:
        def damaged(why: str) -> CheckpointError:
            return CheckpointError(
                f"{path} is a damaged checkpoint ({why}). Move it out of the results folder "
                f"to start run {run_index} afresh; nothing was changed.", [path])

        try:
            meta = json.loads((path / "meta.json").read_text("utf-8"))
        except FileNotFoundError:
            raise damaged("no meta.json") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise damaged(f"meta.json unreadable: {error}") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise damaged(f"meta.json is not a format-{FORMAT} checkpoint description")
        record = meta.get("record")
        expected = {"framework": self.framework, "run_index": run_index, "epoch": epoch}
        wrong = [f"{k} is {meta.get(k)!r}, expected {v!r}" for k, v in expected.items()
                 if meta.get(k) != v]
        if not isinstance(record, dict) or not isinstance(record.get("epochs"), list):
            wrong.append("no run record")
        elif len(record["epochs"]) != epoch or record.get("run_index") != run_index:
            wrong.append(f"its record holds {len(record['epochs'])} epochs of run "
                         f"{record.get('run_index')!r}")
        if not isinstance(meta.get("global_step"), int):
            wrong.append("no global_step")
        state_name = self._trainer_class.STATE_NAME
        if not (path / state_name).exists():
            wrong.append(f"no {state_name}")
        if wrong:
            raise damaged("; ".join(wrong))
        return Checkpoint(path, run_index, epoch, meta["global_step"], self.framework, record)

    def failed_runs(self) -> list[int]:
        """Indices of the runs abandoned on a non-finite loss (noted by :meth:`mark_failed`)."""
        return self._entries()[1]

    # -- writing (only after acquire(), and only the runs this process claims) ----

    def _verify(self, run_index: int) -> None:
        """Raises :class:`demos.claims.ClaimLost` if this process claimed ``run_index`` and lost it."""
        for claim in self.claims.held():
            if claim.run_index == run_index:
                claim.verify()

    def save(self, trainer: Any, record: dict, global_step: int) -> Path:
        """Checkpoint ``trainer`` after epoch ``len(record["epochs"])`` of run ``record["run_index"]``.

        The new checkpoint is complete on disk before the run's older ones are
        deleted. Ctrl-C or SIGTERM during the write is held back until the checkpoint is
        complete, then raised (:func:`demos.atomic.deferred_stop`).

        Raises:
            demos.claims.ClaimLost: this process's claim of the run was taken over;
                nothing was written.
        """
        if self._lock_fd is None:
            raise RuntimeError("CheckpointDir.save() needs acquire() first")
        run_index, epoch = record["run_index"], len(record["epochs"])
        final = self.path / _entry_name(run_index, epoch)
        with atomic.deferred_stop():
            self._verify(run_index)
            tmp = atomic.hidden_name(final)
            tmp.mkdir()
            try:
                self._write(trainer, tmp, record, global_step)
                try:
                    os.rename(tmp, final)
                except OSError:
                    if not final.is_dir():
                        raise
                    # A worker whose claim was taken over wrote this epoch of this run
                    # (the same numbers): keep that one.
                    shutil.rmtree(tmp, ignore_errors=True)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            atomic.fsync_dir(self.path)
            for run, _, older in self._entries()[0]:
                if run == run_index and older != final:
                    _discard(older)
        return final

    def _write(self, trainer: Any, tmp: Path, record: dict, global_step: int) -> None:
        """The trainer's state and ``meta.json`` into the new folder ``tmp``, fsynced."""
        self._trainer_class.save_state(trainer, tmp)
        atomic.write_new(tmp / "meta.json", _json_bytes({
            "format": FORMAT, "framework": self.framework, "run_index": record["run_index"],
            "epoch": len(record["epochs"]), "global_step": int(global_step), "record": record,
            "written": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }))
        atomic.fsync_tree(tmp)

    def load(self, checkpoint: Checkpoint, trainer: Any) -> None:
        """Put ``checkpoint``'s model, optimizer, schedule and RNG state into a freshly built ``trainer``."""
        self._trainer_class.load_state(trainer, checkpoint.path)

    def remove(self, run_index: int | None = None) -> None:
        """Delete the checkpoints of run ``run_index`` (saved, or abandoned); ``None``: of every run."""
        for run, _, path in self._entries()[0]:
            if run_index in (None, run):
                _discard(path)

    def mark_failed(self, run_index: int, message: str, record: dict | None = None) -> Path:
        """Note that run ``run_index`` hit a non-finite loss, so its seed is not retried."""
        if self._lock_fd is None:
            raise RuntimeError("CheckpointDir.mark_failed() needs acquire() first")
        path = self.path / f"failed_run_{run_index:04d}.json"
        atomic.replace_file(path, _json_bytes({
            "run_index": run_index, "error": message, "seed": (record or {}).get("seed"),
            "settings": (record or {}).get("settings"), "epochs": (record or {}).get("epochs"),
            "written": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}))
        return path

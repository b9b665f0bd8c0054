"""Killing a demo where it leaves a run to resume, for the SIGKILL tests.

Random kill delays, timed on one run, can all miss the moments when a demo has
a checkpoint to resume from if the machine slows down; each SIGKILL test
therefore also kills some demos at such a moment on purpose:
:func:`try_kill_with_checkpoint_left` stops (SIGSTOP) a demo that has a
committed checkpoint of a run it has not saved, checks again while nothing
moves, and SIGKILLs it, returning the (run, epoch) that must be resumed.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from pathlib import Path

from demos import results_store
from demos.checkpoint import CheckpointDir

__all__ = ["last_run", "checkpointed_in_progress", "stop", "try_kill_with_checkpoint_left",
           "kill_with_checkpoint_left"]


def last_run(log: Path) -> int | None:
    """The run the demo writing ``log`` trained an epoch of last (``None``: none yet)."""
    try:
        text = log.read_text()
    except FileNotFoundError:  # the demo has not opened its log yet
        return None
    runs = re.findall(r"^run +(\d+) +epoch", text, re.MULTILINE)
    return int(runs[-1]) if runs else None


def checkpointed_in_progress(log: Path, checkpoints: CheckpointDir,
                             runs_dir: Path) -> tuple[int, int] | None:
    """(run, epoch) of the latest committed checkpoint of the demo's last run, if that run
    is not saved yet: what the demo, killed now, leaves for another to resume."""
    run = last_run(log)
    if run is None or (runs_dir / results_store.run_file_name(run)).exists():
        return None
    latest = checkpoints.latest(run)
    return (run, latest.epoch) if latest else None


def _state(pid: int) -> str:
    """The process's state letter (``/proc/<pid>/stat``); "X" once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return "X"


def _check_alive(pid: int, log: Path) -> None:
    assert _state(pid) not in "ZX", f"the demo {pid} ended by itself:\n{log.read_text()}"


def stop(pid: int, log: Path) -> None:
    """SIGSTOP ``pid`` (a child or not) and wait until it is stopped, so the folders hold still."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + 30
    while (state := _state(pid)) not in "tT":
        _check_alive(pid, log)
        assert time.monotonic() < deadline, f"the demo {pid} did not stop (state {state})"
        time.sleep(0.001)


def try_kill_with_checkpoint_left(pid: int, log: Path, checkpoints: CheckpointDir,
                                  runs_dir: Path) -> tuple[int, int] | None:
    """If the demo has a committed checkpoint of its unsaved run, and still has it once
    stopped, SIGKILL it and return that (run, epoch); else leave it running, ``None``."""
    _check_alive(pid, log)
    if not checkpointed_in_progress(log, checkpoints, runs_dir):
        return None
    stop(pid, log)
    left = checkpointed_in_progress(log, checkpoints, runs_dir)
    os.kill(pid, signal.SIGKILL if left else signal.SIGCONT)  # else: it saved the run meanwhile
    return left


def kill_with_checkpoint_left(pid: int, log: Path, checkpoints: CheckpointDir, runs_dir: Path,
                              timeout: float = 120) -> tuple[int, int]:
    """:func:`try_kill_with_checkpoint_left` until it kills the demo (within ``timeout`` s);
    if that fails, the demo is killed all the same (it would train on, or stay stopped)."""
    deadline = time.monotonic() + timeout
    try:
        while not (left := try_kill_with_checkpoint_left(pid, log, checkpoints, runs_dir)):
            assert time.monotonic() < deadline, f"the demo left no checkpoint in {timeout} s"
            time.sleep(0.005)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        raise
    return left

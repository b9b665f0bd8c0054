"""Durable files for results, checkpoints and reports: written whole or not at all.

Every write goes to a temporary name in the destination folder
(``.tmp-<name>-<pid>-<random>.tmp``), is flushed and fsynced, and only then
takes its final name; the folder is fsynced after. A process killed at any
moment leaves the old file or the complete new one, plus at worst a
temporary that every reader skips (hidden, and ending ``.tmp``).

* :func:`create_file`: a new file that never replaces an existing one
  (``results/.../run_NNNN.json``);
* :func:`replace_file`: a new version of a file (reports, plots, notes);
* :func:`write_new`: an exclusive create + fsync, for a file inside a
  temporary folder that is renamed into place whole (checkpoints);
* :func:`make_dirs`, :func:`fsync_dir`, :func:`fsync_tree`: folders made and
  renamed durably;
* :func:`deferred_stop`: Ctrl-C and SIGTERM held back until a multi-step write is complete;
* :func:`sigterm_stops`: SIGTERM stops a demo as Ctrl-C does.

Standard library only.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import threading
import uuid
from pathlib import Path

__all__ = ["hidden_name", "fsync_dir", "fsync_tree", "make_dirs", "write_new", "create_file",
           "replace_file", "STOP_SIGNALS", "deferred_stop", "sigterm_stops"]

# What os.link raises on file systems without hard links: create_file then
# checks for the final name and renames (a tiny race window).
_NO_HARD_LINKS = (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.EXDEV,
                  errno.ENOSYS, errno.EACCES)


def hidden_name(path: Path, kind: str = "tmp", suffix: str = "") -> Path:
    """A unique hidden sibling of ``path``: ``<folder>/.<kind>-<name>-<pid>-<8 hex digits><suffix>``."""
    return path.parent / f".{kind}-{path.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}"


def _fsync(path: Path, directory: bool = False) -> None:
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:  # e.g. folders on Windows
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_dir(directory: Path) -> None:
    """Make a folder's entries (new, renamed or deleted names) durable, where possible."""
    _fsync(directory, directory=True)


def fsync_tree(root: Path) -> None:
    """fsync every file and folder under ``root`` (orbax and ``torch.save`` do not)."""
    for folder, _, files in os.walk(root):
        for name in files:
            _fsync(Path(folder) / name)
        fsync_dir(Path(folder))


def make_dirs(directory: Path) -> None:
    """``mkdir -p`` that fsyncs the parent of every folder it creates.

    An existing non-folder at ``directory`` is left alone: callers check ``is_dir()``.
    """
    missing = []
    d = directory
    while not d.exists():
        missing.append(d)
        if d.parent == d:
            break
        d = d.parent
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            pass  # another process created it meanwhile
        fsync_dir(d.parent)


def write_new(path: Path, data: bytes) -> None:
    """Create ``path`` (it must not exist), write ``data`` and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def create_file(path: Path, data: bytes) -> None:
    """Write ``data`` as the new file ``path``, atomically, never replacing an existing file.

    The complete temporary is hard-linked to ``path`` (the link itself fails if
    ``path`` exists), then unlinked.

    Raises:
        FileExistsError: ``path`` exists (it is left untouched).
    """
    tmp = hidden_name(path, suffix=".tmp")
    try:
        write_new(tmp, data)
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise
        except OSError as exc:
            if exc.errno not in _NO_HARD_LINKS:
                raise
            if os.path.lexists(path):
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path)) from None
            os.rename(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    fsync_dir(path.parent)


def replace_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: readers see the old file or the new one."""
    tmp = hidden_name(path, suffix=".tmp")
    try:
        write_new(tmp, data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


#: The signals that stop a demo: Ctrl-C, and SIGTERM (``kill``, a batch system's time limit).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def deferred_stop():
    """Hold back Ctrl-C (SIGINT) and SIGTERM while the block runs; deliver them when it is done.

    A write of several steps (a checkpoint: the framework's own files, then
    ``meta.json``, fsyncs, a rename; a result and the clean-up after it) then
    completes, or fails as it would have without the signal; a
    KeyboardInterrupt never lands in the middle of it (for orbax, whose
    background threads then print tracebacks and leave the checkpoint
    unfinished). After the block each signal received goes, once, to its
    previous handler: Python's default raises KeyboardInterrupt for SIGINT
    (also when the block raised: the interrupt wins), the default SIGTERM ends
    the process, :func:`sigterm_stops` raises KeyboardInterrupt. Nested blocks
    deliver at the outermost. Outside the main thread (where handlers cannot be
    set) the block runs unprotected.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = {number: signal.signal(number, lambda signum, frame: received.append(signum))
                for number in STOP_SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for number in dict.fromkeys(received):
            handler = previous[number]
            if callable(handler):
                handler(number, None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(number)


@contextlib.contextmanager
def sigterm_stops():
    """While the block runs, SIGTERM raises KeyboardInterrupt, as Ctrl-C does.

    A demo stopped by ``kill`` or by a batch system's time limit (SLURM sends
    SIGTERM) then stops as after Ctrl-C: a write under way completes
    (:func:`deferred_stop`), its claims are released, it says where its runs
    resume. A SIGTERM that was ignored stays ignored; outside the main thread
    nothing changes.
    """
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) == signal.SIG_IGN):
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)

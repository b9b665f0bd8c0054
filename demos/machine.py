"""What a run or a benchmark ran on: the CPU, the package versions and the code's commit;
which machine this is and whether a process on it still runs.

Shared by the demos' records (:mod:`demos.runner`), ``benchmarks/speed.py`` and
the claims of runs (:mod:`demos.claims`). Standard library only.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Iterable

__all__ = ["RUN_PACKAGES", "cpu_name", "package_versions", "code_version", "machine_id",
           "process_start", "process_alive"]

#: The packages whose versions every demo run records (those installed).
RUN_PACKAGES = ("numpy", "torch", "jax", "jaxlib", "flax", "optax", "tensorflow-datasets")

_REPO = Path(__file__).resolve().parent.parent


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what :mod:`platform` knows."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_versions(names: Iterable[str]) -> dict[str, str]:
    """``{name: version}`` of the installed ones among ``names``, in their order."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def code_version() -> str | None:
    """The repository's git commit (with ``-dirty`` for local changes), when available."""
    try:
        return subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"], cwd=_REPO,
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


@lru_cache(maxsize=1)
def machine_id() -> str:
    """Host name, boot id and pid namespace: equal in two processes only where a pid means
    the same process to both."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = ""
    try:
        namespace = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        namespace = ""
    return f"{socket.gethostname()}/{boot}/{namespace}"


def _process_stat_path(path: str) -> tuple[str, str] | None:
    """(state, start time) from a ``/proc`` ``stat`` file; ``None`` if there is none."""
    try:
        text = Path(path).read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2:].split()
    return fields[0], fields[19]


def _process_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time) of process ``pid``; ``None`` if there is none."""
    return _process_stat_path(f"/proc/{pid}/stat")


def process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, as text); ``None`` without ``/proc``."""
    stat = _process_stat(pid)
    return stat[1] if stat else None


def process_alive(pid: int, start: str | None = None) -> bool:
    """Whether process ``pid`` of this machine still runs (and, if ``start`` is given, is the
    process that started then, not a later one that reused the pid).

    A process is gone once every one of its threads has exited (then its files
    are closed and no system call of it is in flight): a killed process whose
    main thread is already a zombie while others still exit is still alive here.
    """
    stat = _process_stat(pid)
    if stat is None:
        if Path("/proc/self/stat").exists():
            return False
        try:  # no /proc: ask the kernel (a reused pid then looks alive)
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    state, started = stat
    if start is not None and started != start:
        return False
    if state not in ("Z", "X"):
        return True
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    return any((_process_stat_path(f"/proc/{pid}/task/{task}/stat") or ("X",))[0] not in ("Z", "X")
               for task in tasks)

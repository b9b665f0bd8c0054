"""What a run or a benchmark ran on: the CPU, the package versions and the code's commit.

Shared by the demos' records (:mod:`demos.runner`) and ``benchmarks/speed.py``.
Standard library only.
"""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Iterable

__all__ = ["RUN_PACKAGES", "cpu_name", "package_versions", "code_version"]

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

"""Will ``K`` parallel runs fit in memory? The arithmetic, framework-free.

Each group trainer (:mod:`demos.parallel_jax`, :mod:`demos.parallel_torch`)
measures what one run costs on its device before it allocates the ``K`` runs'
state (JAX: XLA's own buffer sizes of the compiled step; torch: the tensors
one training step saves for its backward, plus parameters, gradients and
Adam's moments) and what the device can hold; :func:`check_fits` refuses a
``K`` that does not fit, naming the largest that would.
"""

from __future__ import annotations

import os

__all__ = ["SAFETY", "TooManyRunsError", "check_fits", "host_available_bytes"]

#: The fraction of the available memory a group may plan to use (allocator
#: fragmentation, the framework's own buffers, estimates that run short).
SAFETY = 0.9

_GIB = 2**30


class TooManyRunsError(ValueError):
    """``--parallel-runs K`` does not fit in the device's memory; the message names the largest ``K`` that would."""


def host_available_bytes() -> int | None:
    """The memory the operating system can still give a process (``MemAvailable``), or ``None``."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(runs: int, per_run: float, shared: float, capacity: float | None, where: str,
               devices: int = 1) -> dict:
    """Raise unless ``runs`` runs fit; returns the estimate (bytes) for the record and messages.

    Args:
        runs: ``K``, the runs asked for (``--parallel-runs``).
        per_run: bytes one run needs on a device (its state and its share of the step's buffers).
        shared: bytes every device needs whatever ``K`` (the data sets).
        capacity: bytes one device can hold for the group; ``None``: unknown, no check.
        where: the device, for the message (e.g. ``"cuda:0"``, ``"the host"``).
        devices: devices the runs are spread over (each holds ``ceil(K / devices)`` runs).

    Raises:
        TooManyRunsError: naming ``--parallel-runs``, the estimate, the capacity and the largest ``K`` that fits.
    """
    per_device = -(-runs // devices)
    need = shared + per_run * per_device
    estimate = {"per_run_bytes": int(per_run), "shared_bytes": int(shared), "needed_bytes": int(need),
                "capacity_bytes": None if capacity is None else int(capacity)}
    if capacity is None or need <= SAFETY * capacity:
        return estimate
    largest = max(int((SAFETY * capacity - shared) // per_run), 0) * devices if per_run > 0 else 0
    hint = (f"the largest --parallel-runs that fits is {largest}" if largest >= 1 else
            "not even one run fits; use a smaller --batch-size")
    raise TooManyRunsError(
        f"--parallel-runs {runs}: expected to fit in the memory of {where}, got an estimated "
        f"{need / _GIB:.2f} GiB per device ({per_run / _GIB:.3f} GiB per run x {per_device} "
        f"+ {shared / _GIB:.2f} GiB of data) against {capacity / _GIB:.2f} GiB available "
        f"({SAFETY:.0%} of it usable); {hint}")

"""Keep glibc's ``malloc`` from giving large freed blocks back to the system after every step.

A torch training step on a CPU allocates and frees the same large tensors
every step (torch's CPU allocator keeps no cache). glibc serves a block above
its mmap threshold (adjusted on the fly, at most 32 MiB) with a fresh
``mmap`` and trims its heap once more than the trim threshold is free at its
top, so each step's big tensors are page-faulted in, zero-filled by the
kernel, again. Raising both thresholds (:func:`keep_freed_memory`) lets freed
blocks be reused as they are. Measured on this project's 2-core machine
(``benchmarks/cpu_allocator.py``, one thread,
``results/benchmarks/cpu_allocator_2026-12-02_1159.txt``): a training step took
0.86x the time for ``gallery_2764`` at batch 100 and 0.87x for the reference
network at batch 1024. The JAX trainers do not call it (XLA keeps its own
buffers). The values computed are unchanged; the process keeps up to
:data:`TRIM_THRESHOLD` of freed memory for reuse.

Standard library only. Either threshold set before Python starts
(``GLIBC_TUNABLES`` with ``glibc.malloc.mmap_threshold`` or
``glibc.malloc.trim_threshold``, or ``MALLOC_MMAP_THRESHOLD_`` /
``MALLOC_TRIM_THRESHOLD_``) takes precedence: :func:`keep_freed_memory` then
changes nothing.
"""

from __future__ import annotations

import ctypes
import os
import platform

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "keep_freed_memory"]

#: Blocks up to this size come from the heap, not from their own ``mmap``.
MMAP_THRESHOLD = 256 << 20
#: Free memory at the top of the heap kept before it is given back.
TRIM_THRESHOLD = 1 << 30

# mallopt's parameter numbers (glibc's malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def _set_by_user() -> bool:
    """Whether the environment sets either threshold for this process."""
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    return (any(f"glibc.malloc.{name}" in tunables for name in ("mmap_threshold", "trim_threshold"))
            or any(name in os.environ for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")))


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process (see the module docstring).

    Returns:
        ``True`` where both were set; ``False`` (and nothing changed) off
        glibc, or where the environment already sets either threshold.

    Examples:
        >>> keep_freed_memory()  # on Linux with glibc
        True
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if _set_by_user():
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False
    # mallopt returns 1 on success; the mmap threshold first, so a failure leaves the trim alone.
    return mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1

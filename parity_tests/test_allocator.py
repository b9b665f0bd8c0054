"""``demos.allocator``: glibc's thresholds raised by the torch trainers on a CPU, and only there.

Its speed is measured side by side in ``benchmarks/cpu_allocator.py``; here:
what it returns where, that a user's ``GLIBC_TUNABLES`` wins, and that both
torch trainers call it on a CPU.
"""

from __future__ import annotations

import doctest
import platform

import numpy as np
import pytest

import demos.allocator as allocator
import demos.parallel_torch as parallel_torch
import demos.train_torch as train_torch
from demos.architectures import SCS, Architecture, Flatten, Linear, MaxAbsPool
from demos.optim import OneCycle

TINY = Architecture("tiny", (1, 8, 8), 3, (SCS(1, 4, 3, padding=1), MaxAbsPool(), Flatten(), Linear(64, 3)))
ON_GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def _data():
    rng = np.random.default_rng(0)
    return rng.random((16, 8, 8, 1), dtype=np.float32), rng.integers(0, 3, 16)


def test_set_on_glibc_only(monkeypatch):
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    assert allocator.keep_freed_memory() is ON_GLIBC


@pytest.mark.parametrize("name, value", [
    ("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=0"),
    ("GLIBC_TUNABLES", "glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=65536"),
    ("MALLOC_TRIM_THRESHOLD_", "0"),
    ("MALLOC_MMAP_THRESHOLD_", "65536"),
])
def test_a_users_thresholds_are_left_alone(name, value, monkeypatch):
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    monkeypatch.setenv(name, value)
    calls = []
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda *a: calls.append(a))
    assert allocator.keep_freed_memory() is False
    assert calls == []


def test_other_glibc_tunables_do_not_stop_it(monkeypatch):
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=2")
    assert allocator.keep_freed_memory() is ON_GLIBC


def test_the_example_runs():
    if not ON_GLIBC:
        pytest.skip("the example shows glibc's answer")
    result = doctest.testmod(allocator)
    assert result.attempted > 0 and result.failed == 0


def test_both_torch_trainers_call_it_on_a_cpu(monkeypatch):
    images, labels = _data()
    schedule = OneCycle(max_lr=0.01, total_steps=4)
    calls = []
    for module in (train_torch, parallel_torch):
        monkeypatch.setattr(module, "keep_freed_memory", lambda name=module.__name__: calls.append(name) or True)
    train_torch.TorchTrainer(TINY, schedule, images, labels, seed=0, batch_size=8, device="cpu")
    parallel_torch.TorchRunGroup(TINY, schedule, images, labels, seeds=[0, 1], batch_size=8, device="cpu")
    assert calls == ["demos.train_torch", "demos.parallel_torch"]

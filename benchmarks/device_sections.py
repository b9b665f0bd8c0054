"""The measuring sections of ``benchmarks/device_check.py``, each run in a process of its own.

Every section takes the sizes (:class:`Sizes`) and a :class:`Record`, into
which it puts each measurement as soon as it has it (the file is rewritten
atomically after every ``put``), so that a section killed at its time limit
still leaves what it measured. Each checks the time it has left
(:meth:`Record.left`) before starting a measurement it might not finish.

Features of issue 12 are found, not assumed: the JAX epoch scan
(``JaxTrainer.train_steps``), the parallel runs (``demos.trainers.group_class``)
and the torch opt-in that removes per-step overhead (a keyword of
``TorchTrainer``, :data:`TORCH_OPT_IN`). What a checkout lacks is
recorded as ``"not available in this checkout"``.

Timing reuses :func:`benchmarks.speed.time_variants` (interleaved steps of
several trainers, median wall-clock) on :func:`benchmarks.speed.synthetic_data`
(Fashion-MNIST-shaped images).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from benchmarks.speed import synthetic_data, time_variants
from demos import trainers
from demos.architectures import FASHION_MNIST, plain_conv_variant
from demos.batch_plan import BatchPlan
from demos.optim import OneCycle
from demos.recipe import REFERENCE

NOT_AVAILABLE = "not available in this checkout"
#: The ``TorchTrainer`` keyword of the opt-in path without per-step overhead
#: (``--compile-step``: ``torch.compile(mode="reduce-overhead")``, CUDA graphs on a GPU).
TORCH_OPT_IN = "compile_step"
_GIB = 2**30


@dataclass(frozen=True)
class Sizes:
    """What a section measures on: the real Fashion-MNIST shapes, or tiny ones for the dry run.

    ``train``/``test``: synthetic images per set; ``batch``: examples per step;
    ``repeats``/``warmup``: timed and untimed steps per variant; ``epochs``: the
    length of a run for the runs-per-hour figures; ``fused_kernels``: whether to
    time torch's fused SCS kernels (``torch.compile``: 20-60 s of C++
    compilation on a 2-core CPU, too long for the dry run).
    """

    train: int
    test: int
    batch: int
    repeats: int
    warmup: int
    epochs: int = REFERENCE.epochs
    fused_kernels: bool = True


REAL = Sizes(train=60_000, test=10_000, batch=REFERENCE.batch_size, repeats=10, warmup=3)
DRY = Sizes(train=256, test=64, batch=32, repeats=2, warmup=1, fused_kernels=False)


class Record:
    """A section's results, kept in a JSON file rewritten (atomically) after every :meth:`put`."""

    def __init__(self, path: Path, deadline: float):
        self.path, self.deadline, self.data = Path(path), deadline, {}

    def put(self, key: str, value) -> None:
        self.data[key] = value
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=str))
        os.replace(tmp, self.path)

    def left(self) -> float:
        """Seconds until the section's deadline."""
        return self.deadline - time.time()


def _timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def _timing_args(sizes: Sizes) -> SimpleNamespace:
    """The arguments :func:`benchmarks.speed.time_variants` reads."""
    return SimpleNamespace(train_examples=sizes.train, batch_size=sizes.batch, warmup=sizes.warmup,
                           repeats=sizes.repeats)


def _data(sizes: Sizes):
    """Synthetic ``(train images, train labels, test images, test labels)``, NHWC float32."""
    images, labels = synthetic_data(sizes.train)
    test_images, test_labels = synthetic_data(sizes.test, seed=1)
    return images, labels, test_images, test_labels


def _schedule(sizes: Sizes) -> OneCycle:
    return OneCycle(max_lr=REFERENCE.max_lr, total_steps=sizes.epochs * BatchPlan(sizes.train, sizes.batch, 0).steps_per_epoch)


def _step_summary(timings: dict, first_calls: dict) -> dict:
    """Per variant: median step and evaluation ms, the first call and the compile-time estimate (s)."""
    out = {}
    for name, t in timings.items():
        first = first_calls.get(name)
        out[name] = {"step_ms": 1e3 * t["step_median_s"], "eval_ms": 1e3 * t["eval_median_s"],
                     "warmup_s": t["warmup_s"], "first_call_s": first,
                     "compile_s": None if first is None else max(first - t["step_median_s"], 0.0)}
    return out


def _epoch(trainer, sizes: Sizes, data, epoch: int, train_steps=None) -> dict:
    """One epoch of the batch plan of seed 0 (``train_steps``: the whole epoch in one call, else
    ``train_step`` per batch) and the test pass; seconds."""
    images, labels, test_images, test_labels = data
    batches = BatchPlan(len(labels), sizes.batch, 0).batches(epoch)
    trainer.set_epoch(epoch)
    trainer.evaluate(test_images, test_labels)  # untimed: compiles JAX's evaluation for this set's size
    start = time.perf_counter()
    if train_steps is None:
        for indices in batches:
            trainer.train_step(indices)
    else:
        train_steps(batches)
    train = time.perf_counter() - start
    trainer.evaluate(test_images, test_labels)
    total = time.perf_counter() - start
    return {"steps": len(batches), "train_s": train, "test_s": total - train, "epoch_s": total,
            "projected_run_s": sizes.epochs * total}


# --------------------------------------------------------------------------- versions


def versions(sizes: Sizes, record: Record) -> None:
    """The frameworks' own view of the machine: versions, devices, precision defaults."""
    import importlib.util

    import torch

    record.put("torch", {
        "version": torch.__version__, "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
        "threads": torch.get_num_threads(),
        "tf32_defaults": {"matmul": torch.backends.cuda.matmul.allow_tf32,
                          "cudnn": torch.backends.cudnn.allow_tf32}})
    import jax

    record.put("jax", {"version": jax.__version__, "backend": jax.default_backend(),
                       "devices": [str(d) for d in jax.devices()],
                       "device_kind": getattr(jax.devices()[0], "device_kind", ""),
                       "default_matmul_precision": str(getattr(jax.config, "jax_default_matmul_precision", "?"))})
    record.put("importable", {name: importlib.util.find_spec(name) is not None
                              for name in ("flax", "optax", "orbax", "pytest", "hypothesis", "matplotlib",
                                           "tqdm", "tensorflow", "tensorflow_datasets")})


# --------------------------------------------------------------------------- torch


def _torch_peak(trainer, indices) -> int | None:
    """Peak CUDA memory of one training step (bytes), or ``None`` on a CPU."""
    import torch

    if trainer.device.type != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats(trainer.device)
    trainer.train_step(indices)
    torch.cuda.synchronize()
    return int(torch.cuda.max_memory_allocated(trainer.device))


def _torch_pair(scs, first_scs, name: str, other, context, sizes: Sizes) -> dict:
    """The SCS trainer and the variant ``other`` (run inside ``context()``), timed side by side; first calls, peaks."""
    batch = np.arange(sizes.batch)
    with context():
        first = _timed(other.train_step, batch)
    timings = time_variants({"scs": (scs, contextlib.nullcontext), name: (other, context)}, _timing_args(sizes))
    summary = _step_summary(timings, {"scs": first_scs, name: first})
    with context():
        summary[name]["peak_bytes"] = _torch_peak(other, batch)
    summary["scs"]["peak_bytes"] = _torch_peak(scs, batch)
    return summary


def _torch_opt_in(keywords) -> str | None:
    """:data:`TORCH_OPT_IN` if ``TorchTrainer`` takes it (``keywords``: its signature's), else ``None``."""
    return TORCH_OPT_IN if TORCH_OPT_IN in keywords else None


def torch_steps(sizes: Sizes, record: Record) -> None:
    """Torch's training step (SCS vs plain, eager vs the opt-in vs fused kernels), one epoch, memory.

    A variant that fails is recorded as such and the others are still measured;
    the section then ends with an error (exit status 1).
    """
    import scs_torch.compiled as compiled_kernels
    from demos.train_torch import TorchTrainer

    data, schedule = _data(sizes), _schedule(sizes)
    opt_in = _torch_opt_in(inspect.signature(TorchTrainer).parameters)

    def trainer(architecture=FASHION_MNIST, **extra):
        return TorchTrainer(architecture, schedule, *data[:2], seed=0, batch_size=sizes.batch,
                            compile_kernels=False, **extra)

    @contextlib.contextmanager
    def fused():
        compiled_kernels.enable()
        try:
            yield
        finally:
            compiled_kernels.disable()

    scs = trainer()
    record.put("device", str(scs.device))
    pairs = {"scs_vs_plain": ("plain", lambda: (trainer(plain_conv_variant(FASHION_MNIST)), contextlib.nullcontext))}
    if opt_in:
        pairs["scs_vs_opt_in"] = ("scs_" + opt_in, lambda: (trainer(**{opt_in: True}), contextlib.nullcontext))
    else:
        record.put("scs_vs_opt_in", f"CUDA graphs / reduce-overhead: {NOT_AVAILABLE}")
    if sizes.fused_kernels:
        pairs["scs_vs_fused_kernels"] = ("scs_fused", lambda: (trainer(), fused))
    else:
        record.put("scs_vs_fused_kernels", "skipped in the dry run (torch.compile: 20-60 s on a CPU)")
    first_scs, failed = _timed(scs.train_step, np.arange(sizes.batch)), []
    for key, (name, build) in pairs.items():
        if record.left() < 10:
            record.put(key, "skipped: out of the section's time")
            continue
        try:
            other, context = build()
        except ValueError as error:  # e.g. an opt-in for CUDA only, refused on a CPU
            record.put(key, f"refused on {scs.device}: {error}")
            continue
        try:
            record.put(key, _torch_pair(scs, first_scs, name, other, context, sizes))
        except Exception as error:  # noqa: BLE001 - recorded, and the section fails at the end
            record.put(key, f"failed: {error!r}")
            failed.append(key)
        first_scs = None  # compiled once: later pairs report no first call for it
        if key == "scs_vs_plain" and record.left() > 5:  # the epoch before the compilations
            record.put("epoch", _epoch(scs, sizes, data, 1))
    record.put("host_peak_rss_bytes", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    if failed:
        raise RuntimeError(f"torch variants failed: {failed} (see the record)")


# --------------------------------------------------------------------------- JAX


def _jax_peak() -> int | None:
    """The process's peak device memory so far (bytes), where the backend reports it."""
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    return stats.get("peak_bytes_in_use")


def jax_steps(sizes: Sizes, record: Record) -> None:
    """JAX's training step (SCS vs plain, step loop), an epoch as a step loop and as the scan."""
    import jax

    from demos.train_jax import JaxTrainer

    data = _data(sizes)
    schedule = _schedule(sizes)
    record.put("device", str(jax.devices()[0]))

    def trainer(architecture=FASHION_MNIST, **extra):
        return JaxTrainer(architecture, schedule, *data[:2], seed=0, batch_size=sizes.batch, **extra)

    scs, plain = trainer(), trainer(plain_conv_variant(FASHION_MNIST))
    batch = np.arange(sizes.batch)
    first = {"scs": _timed(scs.train_step, batch), "plain": _timed(plain.train_step, batch)}
    timings = time_variants({"scs": (scs, contextlib.nullcontext), "plain": (plain, contextlib.nullcontext)},
                            _timing_args(sizes))
    record.put("scs_vs_plain", _step_summary(timings, first))
    record.put("peak_bytes_after_steps", _jax_peak())
    if record.left() > 5:
        record.put("epoch_step_loop", _epoch(scs, sizes, data, 1))
    if not hasattr(JaxTrainer, "train_steps"):
        record.put("epoch_scan", f"whole-epoch lax.scan (JaxTrainer.train_steps): {NOT_AVAILABLE}")
        return
    if record.left() < 10:
        record.put("epoch_scan", "skipped: out of the section's time")
        return
    whole = {"steps_per_call": None} if "steps_per_call" in inspect.signature(JaxTrainer).parameters else {}
    scan = trainer(**whole)
    first_epoch = _epoch(scan, sizes, data, 0, scan.train_steps)
    result = {"first_epoch_s": first_epoch["epoch_s"], **_epoch(scan, sizes, data, 1, scan.train_steps)}
    cache = getattr(getattr(scan, "_train_scan", None), "_cache_size", None)
    result["compiles"] = cache() if cache else None
    result["compile_s"] = max(first_epoch["epoch_s"] - result["epoch_s"], 0.0)
    record.put("epoch_scan", result)
    record.put("peak_bytes", _jax_peak())


# --------------------------------------------------------------------------- parallel runs


def parallel_available() -> bool:
    """Whether this checkout trains ``--parallel-runs K`` (issue 12's group trainers)."""
    return hasattr(trainers, "group_class")


def parallel(sizes: Sizes, record: Record, framework: str, runs: int) -> None:
    """``runs`` runs of ``framework`` trained together: build, one epoch to compile, one timed epoch."""
    Group = trainers.group_class(framework)
    data = _data(sizes)
    plans = [BatchPlan(sizes.train, sizes.batch, seed) for seed in range(runs)]
    steps = plans[0].steps_per_epoch
    gpu = _on_gpu(framework)
    wanted = {"seeds": list(range(runs)), "batch_size": sizes.batch, "steps_per_epoch": steps,
              "mode": "vmap" if gpu else "map"}
    keywords = inspect.signature(Group).parameters
    start = time.perf_counter()
    try:
        group = Group(FASHION_MNIST, _schedule(sizes), *data[:2],
                      **{k: v for k, v in wanted.items() if k in keywords})
    except ValueError as error:  # TooManyRunsError: does not fit in the device's memory
        record.put("does_not_fit", str(error))
        return
    record.put("build_s", time.perf_counter() - start)
    record.put("mode", wanted["mode"])
    chunk = getattr(group, "steps_per_call", None) or steps

    def epoch(number):
        group.set_epoch(number)
        batches = [plan.batches(number) for plan in plans]
        for first in range(0, steps, chunk):
            group.train_steps([run[first:first + chunk] for run in batches])
        group.evaluate(data[2], data[3])

    record.put("first_epoch_s", _timed(epoch, 0))
    seconds = _timed(epoch, 1)
    record.put("epoch_s", seconds)
    record.put("runs_per_hour", runs * 3600 / (sizes.epochs * seconds))
    record.put("peak_bytes", _jax_peak() if framework == "jax" else _torch_cuda_peak())


def _on_gpu(framework: str) -> bool:
    if framework == "jax":
        import jax

        return jax.devices()[0].platform != "cpu"
    import torch

    return torch.cuda.is_available()


def _torch_cuda_peak() -> int | None:
    import torch

    return int(torch.cuda.max_memory_allocated()) if torch.cuda.is_available() else None


SECTIONS = {"versions": versions, "torch_steps": torch_steps, "jax_steps": jax_steps}

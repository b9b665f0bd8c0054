"""Runs per hour of the ways to train: step loop, epoch scan, K parallel runs (vmap / map), per framework.

Usage::

    python benchmarks/runs_per_hour.py [--framework torch|jax|both] [--runs 4] [--batch-size 1024]
                                       [--steps 8] [--repeats 3] [--arch reference]
                                       [--out results/benchmarks/runs_per_hour_<date>.txt]

One fresh subprocess per framework times, interleaved (one call of each
variant in turn, ``--repeats`` times after a warm-up call, medians kept), a
chunk of ``--steps`` training steps of a Fashion-MNIST network (``--arch``:
``reference``, the demo's network, or a gallery entry such as ``gallery_2764``)
on synthetic data through the trainers' public entry points:

* ``loop``: one run, one call per step (JAX ``JaxTrainer(epoch_scan=False)``,
  torch ``TorchTrainer``; the demos' ``--step-loop`` and torch's default);
* ``scan`` (JAX): one run, the chunk as one compiled ``lax.scan``
  (``JaxTrainer.train_steps``, the JAX demos' default);
* ``map`` / ``vmap``: ``--runs`` runs at once (``demos.parallel_jax.JaxRunGroup``,
  ``demos.parallel_torch.TorchRunGroup``), the step mapped over the runs one
  after another or batched (``--parallel-mode``).

It prints each variant's seconds per step of one run and its runs per hour
relative to the framework's one-run default (``scan`` for JAX, ``loop`` for
torch): above 1, K runs at once pay off on this device. The ratios are
measured side by side in one process; the absolute times depend on the
machine and its load (say so when you commit a report).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from demos import machine as host  # noqa: E402

EXAMPLES = 8192


def _variants(framework: str, args) -> dict:
    """``{name: (object with train_steps, runs it trains)}`` built as the demos build them."""
    from demos import registry
    from demos.optim import OneCycle

    network = registry.get("fashion_mnist").entry(args.arch).architecture

    rng = np.random.default_rng(0)
    images, labels = rng.random((EXAMPLES, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, EXAMPLES)
    schedule = OneCycle(max_lr=0.01, total_steps=100_000)
    seeds = list(range(args.runs))
    common = dict(batch_size=args.batch_size)
    if framework == "jax":
        from demos.parallel_jax import JaxRunGroup
        from demos.train_jax import JaxTrainer

        out = {"loop": (JaxTrainer(network, schedule, images, labels, seed=0, epoch_scan=False, **common), 1),
               "scan": (JaxTrainer(network, schedule, images, labels, seed=0, steps_per_call=args.steps,
                                   **common), 1)}
        for mode in ("map", "vmap"):
            out[mode] = (JaxRunGroup(network, schedule, images, labels, seeds=seeds, mode=mode,
                                     steps_per_epoch=args.steps, steps_per_call=args.steps, **common), args.runs)
    else:
        from demos.parallel_torch import TorchRunGroup
        from demos.train_torch import TorchTrainer

        out = {"loop": (TorchTrainer(network, schedule, images, labels, seed=0, compile_kernels=False,
                                     **common), 1)}
        for mode in ("map", "vmap"):
            out[mode] = (TorchRunGroup(network, schedule, images, labels, seeds=seeds, mode=mode, **common),
                         args.runs)
    return out


def worker(framework: str, args) -> dict:
    """Interleaved medians of one chunk of ``args.steps`` steps per variant."""
    variants = _variants(framework, args)
    rng = np.random.default_rng(1)

    def call(trainer, runs: int) -> float:
        chunk = [[rng.choice(EXAMPLES, args.batch_size, replace=False) for _ in range(args.steps)]
                 for _ in range(runs)]
        start = time.perf_counter()
        trainer.train_steps(chunk[0] if runs == 1 else chunk)
        return time.perf_counter() - start

    for trainer, runs in variants.values():
        call(trainer, runs)  # warm-up: compilation
    times: dict[str, list[float]] = {name: [] for name in variants}
    for repeat in range(args.repeats):
        names = list(variants)
        for name in names[repeat % len(names):] + names[:repeat % len(names)]:
            times[name].append(call(*variants[name]))
    return {name: {"runs": variants[name][1], "chunk_s": samples, "median_s": float(np.median(samples))}
            for name, samples in times.items()}


def report(results: dict, args) -> str:
    lines = [f"runs per hour, {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; {host.cpu_name()}, "
             f"{os.cpu_count()} cores; --arch {args.arch}, batch {args.batch_size}, chunks of {args.steps} steps, "
             f"K = {args.runs}, {args.repeats} interleaved repeats (medians)", ""]
    for framework, variants in results.items():
        if variants is None:
            lines.append(f"{framework}: failed")
            continue
        base = variants["scan" if framework == "jax" else "loop"]
        base_rate = base["runs"] / base["median_s"]
        lines.append(f"{framework:6s} {'variant':8s} {'runs':>4s} {'s/step/run':>11s} {'runs/hour vs one run':>21s}")
        for name, entry in variants.items():
            rate = entry["runs"] / entry["median_s"]
            lines.append(f"{'':6s} {name:8s} {entry['runs']:4d} {entry['median_s'] / args.steps / entry['runs']:11.4f} "
                         f"{rate / base_rate:21.2f}")
        if framework == "jax":
            lines.append(f"{'':6s} scan / loop time ratio: {variants['scan']['median_s'] / variants['loop']['median_s']:.3f}"
                         " (target <= 1.05)")
        lines.append("")
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--framework", choices=("torch", "jax", "both"), default="both")
    parser.add_argument("--runs", type=int, default=4, help="K, the parallel runs")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=8, help="steps per timed call")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--arch", default="reference",
                        help="the Fashion-MNIST network: reference (the demo's) or a gallery entry")
    parser.add_argument("--out", default=None)
    parser.add_argument("--worker", choices=("torch", "jax"), help=argparse.SUPPRESS)
    parser.add_argument("--json-out", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def measure(frameworks, args) -> dict:
    """``{framework: worker's result or None}``, one fresh subprocess per framework."""
    results = {}
    for framework in frameworks:
        with tempfile.NamedTemporaryFile(suffix=".json") as handle:
            command = [sys.executable, str(Path(__file__).resolve()), "--worker", framework,
                       "--json-out", handle.name, "--runs", str(args.runs), "--batch-size",
                       str(args.batch_size), "--steps", str(args.steps), "--repeats", str(args.repeats),
                       "--arch", args.arch]
            done = subprocess.run(command, cwd=ROOT)
            results[framework] = json.loads(Path(handle.name).read_text()) if done.returncode == 0 else None
    return results


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        Path(args.json_out).write_text(json.dumps(worker(args.worker, args)))
        return 0
    results = measure(("torch", "jax") if args.framework == "both" else (args.framework,), args)
    text = report(results, args)
    print(text)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d_%H%M")
    out = Path(args.out or ROOT / "results" / "benchmarks" / f"runs_per_hour_{stamp}.txt")
    out.write_text(text + "\n")
    out.with_suffix(".json").write_text(json.dumps({"args": vars(args), "results": results}, indent=1))
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

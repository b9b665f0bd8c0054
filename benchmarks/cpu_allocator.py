"""The torch trainer's CPU step with glibc's thresholds raised (``demos.allocator``) and without.

Usage::

    python benchmarks/cpu_allocator.py [--arch gallery_2764 reference] [--rounds 4]
                                       [--steps 60] [--out results/benchmarks/cpu_allocator_<date>.txt]

For each architecture and round, two fresh processes in turn, one thread
each: the demos' :class:`demos.train_torch.TorchTrainer` on random images,
once as the demos run it (:func:`demos.allocator.keep_freed_memory` called)
and once with that call made a no-op; each times ``--steps`` training steps
after a warm-up, at the architecture's recipe batch size. The report gives
the median step times and their ratio, with the machine and its load (other
jobs may share the cores); a JSON copy of the samples lies next to it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from demos import machine as host  # noqa: E402
from demos.cli import positive_int  # noqa: E402

VARIANTS = ("kept", "default")


def worker(arch: str, variant: str, steps: int) -> float:
    """Median seconds of a training step, in this process, for one variant."""
    import numpy as np
    import torch

    import demos.train_torch as train_torch
    from demos import registry
    from demos.optim import OneCycle

    torch.set_num_threads(1)
    if variant == "default":
        train_torch.keep_freed_memory = lambda: False
    entry = registry.get("fashion_mnist").entry(arch)
    c, h, w = entry.architecture.input_shape
    batch = entry.recipe.batch_size
    rng = np.random.default_rng(0)
    images = rng.random((4 * batch, h, w, c), dtype=np.float32)
    labels = rng.integers(0, entry.architecture.num_classes, 4 * batch)
    trainer = train_torch.TorchTrainer(entry.architecture, OneCycle(max_lr=1e-3, total_steps=10 * steps),
                                       images, labels, seed=0, batch_size=batch, device="cpu")
    batches = [rng.permutation(4 * batch)[:batch] for _ in range(steps)]
    trainer.train_steps(batches[:5])
    times = []
    for indices in batches:
        started = time.perf_counter()
        trainer.train_step(indices)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(arch: str, variant: str, steps: int) -> float:
    command = [sys.executable, __file__, "--worker", arch, variant, "--steps", str(steps)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return float(done.stdout.strip().splitlines()[-1])


def report(samples: dict, args: argparse.Namespace, load: tuple) -> str:
    lines = [
        f"torch CPU training step, glibc thresholds raised (kept) vs not (default), "
        f"{dt.datetime.now().strftime('%Y-%m-%d %H:%M')}",
        f"machine: {host.cpu_name()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}; "
        f"load average {load[0]:.2f} before, {load[1]:.2f} after (other jobs may share the cores)",
        f"code: {host.code_version()}",
        f"one thread, the recipe's batch size, median of {args.steps} steps per process, "
        f"{args.rounds} rounds of one fresh process per variant, in turn", "",
        f"{'arch':<16}{'kept ms':>9}{'default ms':>12}{'kept/default':>14}",
    ]
    for arch in args.arch:
        kept, default = (statistics.median(samples[arch][v]) * 1000 for v in VARIANTS)
        lines.append(f"{arch:<16}{kept:>9.1f}{default:>12.1f}{kept / default:>14.2f}")
    return "\n".join(lines) + "\n"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", nargs="+", default=["gallery_2764", "reference"],
                        help="Fashion-MNIST gallery names")
    parser.add_argument("--rounds", type=positive_int, default=4)
    parser.add_argument("--steps", type=positive_int, default=60, help="timed steps per process")
    parser.add_argument("--out", default=None,
                        help="report path (default results/benchmarks/cpu_allocator_<date>.txt)")
    parser.add_argument("--worker", nargs=2, metavar=("ARCH", "VARIANT"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        print(worker(*args.worker, args.steps))
        return 0
    before = os.getloadavg()[0]
    samples = {arch: {v: [] for v in VARIANTS} for arch in args.arch}
    for round_ in range(args.rounds):
        for arch in args.arch:
            for variant in VARIANTS:
                seconds = measure(arch, variant, args.steps)
                samples[arch][variant].append(seconds)
                print(f"round {round_ + 1}: {arch} {variant}: {seconds * 1000:.1f} ms/step", flush=True)
    text = report(samples, args, (before, os.getloadavg()[0]))
    print(text)
    out = Path(args.out or ROOT / "results" / "benchmarks" /
               f"cpu_allocator_{dt.datetime.now().strftime('%Y-%m-%d_%H%M')}.txt")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps(samples, indent=1))
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

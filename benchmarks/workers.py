"""Runs per hour with ``--workers 1`` and ``--workers 2``, torch and JAX, side by side (issue 14).

Usage::

    python benchmarks/workers.py [--workers 1 2] [--framework torch jax] [--runs 4]
                                 [--epochs 2] [--limit-train 10240] [--limit-test 2048]
                                 [--rounds 1] [--data-dir DIR] [--out results/benchmarks/workers_<date>.txt]

For every framework and worker count (``--rounds`` times, in turn, so a change
in the machine's load hits every configuration alike) it runs the real demo
command, ``python -m demos fashion_mnist FRAMEWORK bench --workers W --runs R``,
on the real Fashion-MNIST (its first ``--limit-train`` / ``--limit-test``
images: a run of the reference's 100 epochs on all of them takes hours here)
into a fresh temporary results folder, and times it from start to exit. Runs
per hour = runs saved / wall-clock hours, start-up included (each worker
imports its framework and loads the data once, then trains its share of the
runs, ``R / W`` each); the per-run seconds are those recorded in the runs.
The report (with the machine's description and its load average before and
after, since other jobs may share the cores) is printed and saved to ``--out``,
with a JSON copy of every measurement next to it.
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

from demos import machine as host  # noqa: E402
from demos import results_store  # noqa: E402
from demos.cli import positive_int  # noqa: E402
from demos.trainers import FRAMEWORKS  # noqa: E402


def measure(framework: str, workers: int, args: argparse.Namespace) -> dict:
    """One timed demo command of ``workers`` workers; its runs/hour and run times."""
    with tempfile.TemporaryDirectory(prefix="bench_workers_") as results:
        command = [sys.executable, "-m", "demos", "fashion_mnist", framework, "bench",
                   "--workers", str(workers), "--runs", str(args.runs), "--epochs", str(args.epochs),
                   "--limit-train", str(args.limit_train), "--limit-test", str(args.limit_test),
                   "--results-dir", results, "--no-progress"]
        if args.data_dir:
            command += ["--data-dir", args.data_dir]
        started = time.monotonic()
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        seconds = time.monotonic() - started
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n"
                               f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        runs = results_store.load_runs("fashion_mnist", "bench", framework, results)
    run_seconds = [sum(e["seconds"] for e in r["epochs"]) for r in runs]
    stamps = [dt.datetime.fromisoformat(r[key]) for r in runs for key in ("started", "finished")]
    training = max((max(stamps) - min(stamps)).total_seconds(), 1.0)
    return {"framework": framework, "workers": workers, "runs": len(runs), "seconds": seconds,
            "runs_per_hour": 3600 * len(runs) / seconds, "training_seconds": training,
            "mean_run_seconds": sum(run_seconds) / len(run_seconds)}


def report(samples: list[dict], args: argparse.Namespace, load: tuple) -> str:
    """The side-by-side table of runs/hour, per framework and worker count."""
    lines = [
        f"Runs per hour, --workers {' vs '.join(map(str, args.workers))}, "
        f"{dt.datetime.now().strftime('%Y-%m-%d %H:%M')}",
        f"machine: {host.cpu_name()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}; "
        f"load average {load[0]:.2f} before, {load[1]:.2f} after (other jobs may share the cores)",
        f"code: {host.code_version()}",
        f"a run: {args.epochs} epochs of the first {args.limit_train} Fashion-MNIST training images "
        f"(test pass over the first {args.limit_test}), batch 1024; {args.runs} runs per command, "
        f"shared among the workers; {args.rounds} round(s), start-up included", "",
        f"{'framework':<10}{'workers':>8}{'runs':>6}{'wall s':>9}{'runs/hour':>11}"
        f"{'vs 1':>7}{'training runs/hour':>20}{'vs 1':>7}{'s per run':>11}",
    ]
    for framework in args.framework:
        base = None
        for workers in args.workers:
            group = [s for s in samples if (s["framework"], s["workers"]) == (framework, workers)]
            runs, seconds = sum(s["runs"] for s in group), sum(s["seconds"] for s in group)
            rates = (3600 * runs / seconds,
                     3600 * runs / sum(s["training_seconds"] for s in group))
            base = base or rates
            per_run = sum(s["mean_run_seconds"] for s in group) / len(group)
            lines.append(f"{framework:<10}{workers:>8}{runs:>6}{seconds:>9.1f}{rates[0]:>11.1f}"
                         f"{rates[0] / base[0]:>6.2f}x{rates[1]:>20.1f}{rates[1] / base[1]:>6.2f}x"
                         f"{per_run:>11.1f}")
    return "\n".join(lines) + "\n"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=positive_int, nargs="+", default=[1, 2])
    parser.add_argument("--framework", choices=FRAMEWORKS, nargs="+", default=list(FRAMEWORKS))
    parser.add_argument("--runs", type=positive_int, default=4, help="runs per command")
    parser.add_argument("--epochs", type=positive_int, default=2, help="epochs per run")
    parser.add_argument("--limit-train", type=positive_int, default=10240)
    parser.add_argument("--limit-test", type=positive_int, default=2048)
    parser.add_argument("--rounds", type=positive_int, default=1)
    parser.add_argument("--data-dir", default=None, help="the demos' --data-dir")
    parser.add_argument("--out", default=None,
                        help="report path (default results/benchmarks/workers_<date>.txt)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    before, samples = os.getloadavg()[0], []
    for round_ in range(args.rounds):
        for framework in args.framework:
            for workers in args.workers:
                sample = measure(framework, workers, args)
                print(f"round {round_ + 1}: {framework} --workers {workers}: {sample['runs']} runs "
                      f"in {sample['seconds']:.1f} s ({sample['runs_per_hour']:.1f} runs/hour)",
                      flush=True)
                samples.append(sample)
    text = report(samples, args, (before, os.getloadavg()[0]))
    print(text, end="")
    out = Path(args.out or ROOT / "results" / "benchmarks" /
               f"workers_{dt.datetime.now().strftime('%Y-%m-%d_%H%M')}.txt")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps({"settings": vars(args), "samples": samples},
                                                   indent=1) + "\n")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

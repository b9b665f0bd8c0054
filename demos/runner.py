"""What every demo shares: the command line, the run-after-run loop, printing and saving.

``demos/fashion_mnist_torch.py`` and its twins call :func:`main` with their
dataset and framework. A run trains one freshly initialised network for
``--epochs`` epochs with the reference's recipe (batch 1024, Adam, one-cycle
peaking at 0.01, stepped every batch) on batches from :class:`~demos.batch_plan.BatchPlan`,
evaluates on the test set after each epoch and, when it completes, is saved
to ``results/<dataset>/<version>/<framework>/run_NNNN.json``. Runs repeat
until ``--runs`` is reached or the user stops the demo (Ctrl-C); a restarted
demo with the same version appends after the runs already saved.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import platform
import sys
import time
from importlib import metadata

import numpy as np

from . import results_store
from .architectures import get_architecture
from .batch_plan import BatchPlan

__all__ = ["parse_args", "main", "NonFiniteLossError"]

DEFAULTS = {"epochs": 100, "batch_size": 1024, "max_lr": 0.01, "seed": 0}


class NonFiniteLossError(RuntimeError):
    """A training loss became NaN or infinite; the run is abandoned and not saved."""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _version(text: str) -> str:
    try:
        return results_store.validate_version(text)
    except (TypeError, ValueError) as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parse_args(dataset: str, framework: str, argv=None) -> argparse.Namespace:
    """The demo's command line (``--help`` explains every flag)."""
    parser = argparse.ArgumentParser(
        prog=f"demos/{dataset}_{framework}.py",
        description=(
            f"Train the reference SCS network on {dataset} with {framework}, run after run, "
            f"and append each completed run to results/{dataset}/VERSION/{framework}/. "
            "Stop it any time with Ctrl-C; completed runs are kept and a restart appends."
        ),
    )
    parser.add_argument(
        "version", nargs="?", default="test", type=_version,
        help="results version: letters, digits and underscores (default: %(default)s)",
    )
    parser.add_argument("--epochs", type=_positive_int, default=DEFAULTS["epochs"],
                        help="epochs per run (default: %(default)s)")
    parser.add_argument("--runs", type=_positive_int, default=None,
                        help="number of runs to add, then stop (default: until stopped)")
    parser.add_argument("--batch-size", type=_positive_int, default=DEFAULTS["batch_size"],
                        help="examples per batch (default: %(default)s)")
    parser.add_argument("--max-lr", type=_positive_float, default=DEFAULTS["max_lr"],
                        help="peak learning rate of the one-cycle schedule (default: %(default)s)")
    parser.add_argument("--seed", type=_non_negative_int, default=DEFAULTS["seed"],
                        help="base seed; run N uses seed + N (default: %(default)s)")
    parser.add_argument("--data-dir", default=None,
                        help="folder with local dataset files (Fashion-MNIST: the four IDX .gz "
                             "files, default /usr/share/datasets/fashion-mnist if present; "
                             "CIFAR-10: cifar-10-binary.tar.gz)")
    parser.add_argument("--results-dir", default=None,
                        help="where results are stored (default: the repository's results/)")
    parser.add_argument("--limit-train", type=_positive_int, default=None,
                        help="train on the first N training examples only (for smoke tests)")
    parser.add_argument("--limit-test", type=_positive_int, default=None,
                        help="evaluate on the first N test examples only (for smoke tests)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    if framework == "torch":
        parser.add_argument("--device", default=None,
                            help="torch device (default: cuda if available, else cpu)")
    return parser.parse_args(argv)


def _packages() -> dict[str, str]:
    versions = {}
    for name in ("numpy", "torch", "jax", "jaxlib", "flax", "optax", "tensorflow-datasets"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _code_version() -> str | None:
    """The repository's git commit (with ``-dirty`` for local changes), when available."""
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        return subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"], cwd=root,
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _make_trainer(framework, architecture, schedule, data, seed, args):
    common = dict(seed=seed, batch_size=args.batch_size)
    if framework == "torch":
        from .train_torch import TorchTrainer

        return TorchTrainer(architecture, schedule, data.train_images, data.train_labels,
                            device=args.device, **common)
    from .train_jax import JaxTrainer

    return JaxTrainer(architecture, schedule, data.train_images, data.train_labels, **common)


def _device_name(framework, trainer) -> str:
    if framework == "torch":
        return str(trainer.device)
    from .train_jax import default_device

    return default_device()


def train_run(framework, architecture, data, args, run_index: int, progress: bool = True) -> dict:
    """Train one run and return its record (not yet saved).

    Raises:
        NonFiniteLossError: naming the run, epoch and step where the loss stopped being finite.
    """
    from tqdm import tqdm

    from .optim import OneCycle

    seed = args.seed + run_index
    plan = BatchPlan(len(data.train_labels), args.batch_size, seed)
    schedule = OneCycle(max_lr=args.max_lr, total_steps=args.epochs * plan.steps_per_epoch)
    learning_rates = schedule.learning_rates()
    trainer = _make_trainer(framework, architecture, schedule, data, seed, args)
    record = {
        "schema": results_store.SCHEMA_VERSION, "dataset": data.name, "version": args.version,
        "framework": framework, "run_index": run_index, "seed": seed,
        "settings": {
            "epochs": args.epochs, "batch_size": args.batch_size, "max_lr": args.max_lr,
            "optimizer": "adam", "schedule": "one-cycle (torch OneCycleLR defaults)",
            "pct_start": schedule.pct_start, "steps_per_epoch": plan.steps_per_epoch,
            "train_examples": len(data.train_labels), "test_examples": len(data.test_labels),
            "dtype": "float32", "data_source": data.source,
        },
        "epochs": [],
        "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "packages": _packages(),
        "code": _code_version(),
        "host": {"cpu": _cpu_name(), "cores": os.cpu_count(),
                 "device": _device_name(framework, trainer), "python": platform.python_version()},
    }
    step = 0
    for epoch in range(args.epochs):
        start = time.perf_counter()
        loss_sum, correct = 0.0, 0
        batches = plan.batches(epoch)
        bar = tqdm(batches, desc=f"run {run_index} epoch {epoch + 1}/{args.epochs}",
                   leave=False, disable=not progress, unit="batch", file=sys.stderr)
        for batch_number, indices in enumerate(bar):
            loss, batch_correct = trainer.train_step(indices)
            step += 1
            if not math.isfinite(loss):
                bar.close()
                raise NonFiniteLossError(
                    f"run {run_index}: the training loss became {loss} at epoch {epoch + 1}, "
                    f"step {batch_number + 1} of {len(batches)} (global step {step}); "
                    "the run is abandoned and not saved"
                )
            loss_sum += loss * len(indices)
            correct += batch_correct
        bar.close()
        train_seconds = time.perf_counter() - start
        test_loss, test_accuracy = trainer.evaluate(data.test_images, data.test_labels)
        seconds = time.perf_counter() - start
        entry = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / len(data.train_labels),
            "train_accuracy": correct / len(data.train_labels),
            "test_loss": test_loss,
            "test_accuracy": test_accuracy,
            "test_error": 100.0 * (1.0 - test_accuracy),
            "learning_rate": float(learning_rates[step - 1]),
            "seconds": seconds,
            "train_seconds": train_seconds,
        }
        record["epochs"].append(entry)
        print(
            f"run {run_index:3d}  epoch {epoch + 1:3d}/{args.epochs}  {seconds:6.1f} s  "
            f"lr {entry['learning_rate']:.2e}  train loss {entry['train_loss']:.4f}  "
            f"test loss {test_loss:.4f}  train acc {100 * entry['train_accuracy']:6.2f}%  "
            f"test acc {100 * test_accuracy:6.2f}%",
            flush=True,
        )
    record["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    return record


def _limit(data, args):
    from dataclasses import replace

    if args.limit_train is None and args.limit_test is None:
        return data
    return replace(
        data,
        train_images=data.train_images[: args.limit_train],
        train_labels=data.train_labels[: args.limit_train],
        test_images=data.test_images[: args.limit_test],
        test_labels=data.test_labels[: args.limit_test],
        source=f"{data.source} (first {args.limit_train or 'all'} train / "
               f"{args.limit_test or 'all'} test examples)",
    )


def main(dataset: str, framework: str, argv=None) -> int:
    """Run the demo; returns the process exit status.

    0: every requested run completed (or the user stopped it); 1: with
    ``--runs 1`` the run hit a non-finite loss; 2: bad arguments, unreadable
    results or unavailable data (the message says which and how to fix it).
    """
    args = parse_args(dataset, framework, argv)
    from .data import DataUnavailableError, load_dataset

    try:
        results_store.check_appendable(dataset, args.version, framework, args.results_dir)
        previous = results_store.load_runs(dataset, args.version, framework, args.results_dir)
    except results_store.ResultsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if previous:
        summary = results_store.summarize(previous)[(dataset, framework)]
        print(f"{len(previous)} earlier {framework} run(s) of {dataset} {args.version}: "
              f"final test error {summary['mean']:.2f}% mean; appending.")
    try:
        data = _limit(load_dataset(dataset, args.data_dir), args)
    except DataUnavailableError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{dataset}: {len(data.train_labels)} training and {len(data.test_labels)} test images "
          f"from {data.source}")
    architecture = get_architecture(dataset)
    progress = not args.no_progress
    completed, failed = 0, 0
    try:
        while args.runs is None or completed + failed < args.runs:
            run_index = results_store.next_run_index(dataset, args.version, framework, args.results_dir)
            try:
                record = train_run(framework, architecture, data, args, run_index, progress)
            except NonFiniteLossError as error:
                print(f"error: {error}", file=sys.stderr, flush=True)
                failed += 1
                continue
            path = results_store.save_run(record, args.results_dir)
            completed += 1
            print(f"saved run {run_index} to {path}", flush=True)
    except KeyboardInterrupt:
        print(f"\nstopped; {completed} run(s) completed and saved in this session, "
              "the interrupted run was discarded.", file=sys.stderr)
        return 0
    return 1 if failed else 0

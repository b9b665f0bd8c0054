"""Running the demos in tests, and comparing what they saved.

The robustness tests train the real Fashion-MNIST network on a few generated
images (:func:`helpers.demo_data.make_idx_dir`) with :func:`demo_args`;
:func:`numbers` and :func:`tree_bytes` compare runs and folders; :class:`StopAfter`
stops or copies a demo at a chosen checkpoint; :func:`make_record` writes small
valid run records without training.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from demos.checkpoint import CheckpointDir
from demos.recipe import REFERENCE

__all__ = ["REPO", "DATASET", "VERSION", "TIMING_KEYS", "demo_args", "numbers", "tree_bytes",
           "snapshot", "StopAfter", "make_record"]

REPO = Path(__file__).resolve().parents[2]
DATASET = "fashion_mnist"
VERSION = "t1"
TIMING_KEYS = ("seconds", "train_seconds")


def demo_args(data_dir: Path, results: Path, *, epochs=3, runs=1, extra=()) -> list[str]:
    # 40 examples in batches of 16: 3 steps an epoch, the last one partial.
    return [VERSION, "--epochs", str(epochs), "--runs", str(runs), "--batch-size", "16",
            "--seed", "3", "--data-dir", str(data_dir), "--no-checksum", "--no-progress",
            "--results-dir", str(results), *extra]


def numbers(record: dict) -> list[dict]:
    """A run's per-epoch numbers without the wall-clock timings."""
    return [{k: v for k, v in e.items() if k not in TIMING_KEYS} for e in record["epochs"]]


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def snapshot(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


class StopAfter:
    """Wraps ``CheckpointDir.save``: after the checkpoint of (run, epoch) is on disk,
    copy the checkpoint folder to ``copy_to`` and/or raise KeyboardInterrupt (Ctrl-C)."""

    def __init__(self, run: int, epoch: int, *, copy_to: Path | None = None, interrupt=False):
        self.run, self.epoch, self.copy_to, self.interrupt = run, epoch, copy_to, interrupt
        self.original = CheckpointDir.save
        self.hit = False

    def method(self):
        """The replacement for ``CheckpointDir.save`` (a plain function, so it binds)."""

        def save(directory, trainer, record, step):
            path = self.original(directory, trainer, record, step)
            if (record["run_index"], len(record["epochs"])) == (self.run, self.epoch):
                self.hit = True
                if self.copy_to is not None:
                    shutil.copytree(directory.path, self.copy_to,
                                    ignore=shutil.ignore_patterns(".lock"))
                if self.interrupt:
                    raise KeyboardInterrupt
            return path

        return save


def make_record(framework="torch", run_index=0, final_errors=None, *,
                dataset="fashion_mnist", version="v1", n_epochs=3, seed=None, settings=None):
    """A small valid record whose last epoch has test_error final_errors (``settings``: extra settings)."""
    final = 10.0 if final_errors is None else final_errors
    epochs = []
    for e in range(1, n_epochs + 1):
        err = final + 2.0 * (n_epochs - e)
        epochs.append({
            "epoch": e, "train_loss": 1.0 / e, "train_accuracy": 0.5,
            "test_loss": 0.9 / e, "test_accuracy": 1 - err / 100,
            "test_error": err, "learning_rate": 0.01, "seconds": 0.5,
        })
    return {
        "schema": 1, "dataset": dataset, "version": version,
        "framework": framework, "run_index": run_index,
        "seed": run_index if seed is None else seed,
        "settings": {"epochs": n_epochs, "batch_size": REFERENCE.batch_size, "max_lr": REFERENCE.max_lr,
                     **(settings or {})},
        "epochs": epochs,
        "started": "2026-01-01T00:00:00+00:00",
        "finished": "2026-01-01T00:01:00+00:00",
        "packages": {framework: "0.0"},
        "host": {"cpu": "test", "cores": 2, "device": "cpu"},
    }

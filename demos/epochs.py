"""What an epoch adds to a run's record, shared by one run (:func:`demos.runner.train_run`) and
a group of parallel runs (:mod:`demos.parallel`): the epoch's entry, the totals of a chunk of
training steps, the error of a loss that became non-finite, the printed line.
"""

from __future__ import annotations

import math
import time

__all__ = ["NonFiniteLossError", "epoch_entry", "chunk_totals", "non_finite", "print_epoch"]


class NonFiniteLossError(RuntimeError):
    """A training loss became NaN or infinite; the run is abandoned and not saved.

    ``run_index``, ``epoch`` and ``step`` (both 1-based, the step counted within
    the epoch) say where; ``record`` is the run's record up to the last
    completed epoch.
    """

    def __init__(self, message: str, run_index: int, epoch: int, step: int, record: dict):
        super().__init__(message)
        self.run_index, self.epoch, self.step, self.record = run_index, epoch, step, record


def epoch_entry(epoch: int, loss_sum: float, correct: int, examples: int, test: tuple[float, float],
                learning_rate: float, start: float, train_seconds: float) -> dict:
    """A record's entry for 0-based ``epoch`` (:data:`demos.records.EPOCH_KEYS`), timed from ``start``."""
    test_loss, test_accuracy = test
    return {
        "epoch": epoch + 1,
        "train_loss": loss_sum / examples,
        "train_accuracy": correct / examples,
        "test_loss": test_loss,
        "test_accuracy": test_accuracy,
        "test_error": 100.0 * (1.0 - test_accuracy),
        "learning_rate": float(learning_rate),
        "seconds": time.perf_counter() - start,
        "train_seconds": train_seconds,
    }


def chunk_totals(batches: list, losses, corrects) -> tuple[float, int, int | None]:
    """A chunk's summed loss (each mean loss times its batch's size, added in order in float64)
    and correct predictions; the 0-based position of the first non-finite loss, or ``None``."""
    loss_sum, correct = 0.0, 0
    for position, (indices, loss, batch_correct) in enumerate(zip(batches, losses, corrects)):
        loss = float(loss)
        if not math.isfinite(loss):
            return loss_sum, correct, position
        loss_sum += loss * len(indices)
        correct += int(batch_correct)
    return loss_sum, correct, None


def non_finite(record: dict, loss: float, epoch: int, position: int, steps: int, step: int
               ) -> NonFiniteLossError:
    """The error of a run whose loss became ``loss`` at 0-based ``position`` of 0-based
    ``epoch`` (``step``: global steps before that epoch)."""
    run_index = record["run_index"]
    return NonFiniteLossError(
        f"run {run_index}: the training loss became {float(loss)} at epoch {epoch + 1}, "
        f"step {position + 1} of {steps} (global step {step + position + 1}); "
        "the run is abandoned and not saved",
        run_index, epoch + 1, position + 1, record,
    )


def print_epoch(run_index: int, epochs: int, entry: dict) -> None:
    print(
        f"run {run_index:3d}  epoch {entry['epoch']:3d}/{epochs}  {entry['seconds']:6.1f} s  "
        f"lr {entry['learning_rate']:.2e}  train loss {entry['train_loss']:.4f}  "
        f"test loss {entry['test_loss']:.4f}  train acc {100 * entry['train_accuracy']:6.2f}%  "
        f"test acc {100 * entry['test_accuracy']:6.2f}%",
        flush=True,
    )

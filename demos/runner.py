"""What every demo shares: the command line, the run-after-run loop, printing and saving.

``demos/fashion_mnist_torch.py`` and its twins call :func:`main` with their
dataset and framework. A run trains one freshly initialised network for
``--epochs`` epochs with the reference's recipe (batch 1024, Adam, one-cycle
peaking at 0.01, stepped every batch) on batches from :class:`~demos.batch_plan.BatchPlan`,
evaluates on the test set after each epoch and, when it completes, is saved
to ``results/<dataset>/<version>/<framework>/run_NNNN.json``. Runs repeat
until ``--runs`` is reached or the user stops the demo (Ctrl-C); a restarted
demo with the same version appends after the runs already saved.

Augmentation (``--random-crop``, ``--hflip``; meant for CIFAR-10): each
epoch's training batches are cropped and flipped as :class:`~demos.augment.AugmentPlan`
draws them from the run's seed, identically in both frameworks; the test set
is never augmented. The flags are part of the run's settings.

Resume: after every epoch but the last the run in progress is checkpointed
(:mod:`demos.checkpoint`, under ``results/<dataset>/<version>/checkpoint/``).
A demo restarted with the same version and settings resumes that run from
its last completed epoch and produces the same per-epoch numbers as an
uninterrupted run; with other settings it stops with an error naming the
checkpoint instead of discarding it. The checkpoint is deleted once the run
is saved.

Numerical faults: a non-finite training loss abandons the run (nothing of it
is saved as a result, its checkpoint is deleted and a note
``failed_run_NNNN.json`` in the checkpoint folder keeps its seed from being
retried); the demo goes on with the next run and finally exits with status 1.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import importlib.util
import json
import math
import os
import platform
import sys
import time

import numpy as np

from . import machine, results_store
from .architectures import get_architecture
from .augment import CIFAR_CROP_PADDING, AugmentPlan
from .batch_plan import BatchPlan
from .checkpoint import Checkpoint, CheckpointDir, CheckpointError
from .stats import summarize

__all__ = ["parse_args", "main", "train_run", "NonFiniteLossError"]

DEFAULTS = {"epochs": 100, "batch_size": 1024, "max_lr": 0.01, "seed": 0}


class NonFiniteLossError(RuntimeError):
    """A training loss became NaN or infinite; the run is abandoned and not saved.

    ``run_index``, ``epoch`` and ``step`` (both 1-based, the step counted within
    the epoch) say where; ``record`` is the run's record up to the last
    completed epoch.
    """

    def __init__(self, message: str, run_index: int, epoch: int, step: int, record: dict):
        super().__init__(message)
        self.run_index, self.epoch, self.step, self.record = run_index, epoch, step, record


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


#: Seeds stay below 2**62 so that seed + run index fits every RNG's seed type
#: (torch.manual_seed and JAX's keys take 64-bit integers).
_MAX_SEED = 2**62


def _seed(text: str) -> int:
    value = _non_negative_int(text)
    if value >= _MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected a seed below 2**62, got {text!r}")
    return value


def _torch_device(text: str) -> str:
    """A torch device string that exists here (checked before any data is loaded)."""
    import torch

    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"expected a torch device such as cpu or cuda:0, got {text!r}") from None
    if device.type == "meta":
        raise argparse.ArgumentTypeError("expected a device that computes (cpu, cuda, ...), got 'meta'")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: this torch build sees no CUDA device")
    if device.type not in ("cpu", "cuda") and not getattr(torch, device.type, None):
        raise argparse.ArgumentTypeError(f"{text!r}: this torch build has no {device.type} backend")
    return text


def _positive_float(text: str) -> float:
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


#: Largest accepted --max-lr: above about 1e37, torch's Adam step itself overflows float32.
MAX_LEARNING_RATE = 1e30


def _learning_rate(text: str) -> float:
    value = _positive_float(text)
    if value > MAX_LEARNING_RATE:
        raise argparse.ArgumentTypeError(
            f"expected at most {MAX_LEARNING_RATE:g} (larger learning rates overflow float32 "
            f"inside Adam's update), got {text!r}")
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
    parser.add_argument("--max-lr", type=_learning_rate, default=DEFAULTS["max_lr"],
                        help="peak learning rate of the one-cycle schedule (default: %(default)s)")
    parser.add_argument("--seed", type=_seed, default=DEFAULTS["seed"],
                        help="base seed; run N uses seed + N (default: %(default)s)")
    parser.add_argument("--data-dir", default=None,
                        help="folder with local dataset files (Fashion-MNIST: the four IDX .gz "
                             "files, default /usr/share/datasets/fashion-mnist if present; "
                             "CIFAR-10: cifar-10-binary.tar.gz)")
    parser.add_argument("--no-checksum", action="store_true",
                        help="with --data-dir: accept files that are not the official dataset "
                             "(e.g. small generated files for tests); they are only checked for "
                             "a valid format, parsed with NumPy, and each run's settings say so")
    parser.add_argument("--results-dir", default=None,
                        help="where results are stored (default: the repository's results/)")
    parser.add_argument("--limit-train", type=_positive_int, default=None,
                        help="train on the first N training examples only (for smoke tests)")
    parser.add_argument("--limit-test", type=_positive_int, default=None,
                        help="evaluate on the first N test examples only (for smoke tests)")
    parser.add_argument("--no-progress", action="store_true",
                        help="hide the progress bars (also TFDS's while it builds a dataset)")
    parser.add_argument("--random-crop", action="store_true",
                        help=f"augment the training images (CIFAR-10's recipe): a random crop of "
                             f"the image zero-padded by {CIFAR_CROP_PADDING} pixels, offsets drawn "
                             "per image and epoch from the run's seed, the same in torch and JAX; "
                             "the test set is never augmented (default: off)")
    parser.add_argument("--hflip", action="store_true",
                        help="augment the training images (CIFAR-10's recipe): mirror each one "
                             "left to right with probability 0.5, drawn per image and epoch from "
                             "the run's seed, the same in torch and JAX (default: off)")
    if framework == "torch":
        parser.add_argument("--device", type=_torch_device, default=None,
                            help="torch device (default: cuda if available, else cpu)")
        parser.add_argument("--compile", action="store_true",
                            help="fuse the SCS layers' elementwise work with torch.compile "
                                 "(scs_torch.compiled; needs a C++ compiler, tens of seconds of "
                                 "compilation at the first step, then faster steps); the same "
                                 "maths up to float rounding, so a run may be resumed with or "
                                 "without it (default: off, unless SCS_TORCH_COMPILE=1)")
    args = parser.parse_args(argv)
    if args.no_checksum and args.data_dir is None:
        parser.error("--no-checksum needs --data-dir (it only applies to local files)")
    return args


def _augment_plan(args, data, seed: int) -> AugmentPlan:
    """The run's augmentation as the flags ask (a plan that does nothing without them)."""
    return AugmentPlan(len(data.train_labels), tuple(data.train_images.shape[1:3]), seed,
                       crop_padding=CIFAR_CROP_PADDING if args.random_crop else 0,
                       hflip=args.hflip)


def _make_trainer(framework, architecture, schedule, data, seed, args):
    common = dict(seed=seed, batch_size=args.batch_size, augment=_augment_plan(args, data, seed))
    if framework == "torch":
        from .train_torch import TorchTrainer

        # Without --compile, None leaves the choice to SCS_TORCH_COMPILE.
        return TorchTrainer(architecture, schedule, data.train_images, data.train_labels,
                            device=args.device, compile_kernels=True if args.compile else None,
                            **common)
    from .train_jax import JaxTrainer

    return JaxTrainer(architecture, schedule, data.train_images, data.train_labels, **common)


def _device_name(framework, trainer) -> str:
    if framework == "torch":
        return str(trainer.device)
    from .train_jax import default_device

    return default_device()


def data_fingerprint(data) -> str:
    """sha256 over the training and test arrays as used (after ``--limit-*``).

    Stored in every run's settings; a checkpoint resumes only on the same data.
    """
    digest = hashlib.sha256()
    for array in (data.train_images, data.train_labels, data.test_images, data.test_labels):
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def run_settings(args, data, plan: BatchPlan, schedule, data_sha256: str) -> dict:
    """The ``settings`` of a run's record: everything that decides its numbers.

    ``random_crop_padding`` (0: no crop) and ``hflip`` record the augmentation.
    A torch run's ``train_run`` adds ``torch_compile`` (whether the fused
    kernels ran; not compared on resume).
    """
    return {
        "epochs": args.epochs, "batch_size": args.batch_size, "max_lr": args.max_lr,
        "optimizer": "adam", "schedule": "one-cycle (torch OneCycleLR defaults)",
        "pct_start": schedule.pct_start, "steps_per_epoch": plan.steps_per_epoch,
        "train_examples": len(data.train_labels), "test_examples": len(data.test_labels),
        "dtype": "float32", "data_source": data.source, "data_sha256": data_sha256,
        **_augment_plan(args, data, plan.seed).settings(),
    }


def train_run(framework, architecture, data, args, run_index: int, progress: bool = True, *,
              checkpoints: CheckpointDir | None = None, resume: Checkpoint | None = None,
              data_sha256: str | None = None) -> dict:
    """Train one run and return its record (not yet saved).

    Args:
        checkpoints: where to checkpoint the run after each epoch but the last
            (its lock must be held); ``None``: no checkpoints.
        resume: a checkpoint of this run to continue from (its settings must
            match; :func:`main` checks them).
        data_sha256: :func:`data_fingerprint` of ``data`` (computed when ``None``).

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
    if data_sha256 is None:
        data_sha256 = data_fingerprint(data)
    compiled = {"torch_compile": trainer.compile_kernels} if framework == "torch" else {}
    if resume is None:
        record = {
            "schema": results_store.SCHEMA_VERSION, "dataset": data.name, "version": args.version,
            "framework": framework, "run_index": run_index, "seed": seed,
            "settings": {**run_settings(args, data, plan, schedule, data_sha256), **compiled},
            "epochs": [],
            "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "packages": machine.package_versions(machine.RUN_PACKAGES),
            "code": machine.code_version(),
            "host": {"cpu": machine.cpu_name(), "cores": os.cpu_count(),
                     "device": _device_name(framework, trainer), "python": platform.python_version()},
        }
    else:
        if resume.run_index != run_index:
            raise ValueError(f"resume: a checkpoint of run {resume.run_index}, not {run_index}")
        checkpoints.load(resume, trainer)
        record = json.loads(json.dumps(resume.record))
        record.setdefault("resumed", []).append({
            "after_epoch": resume.epoch,
            "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "code": machine.code_version(),
            **compiled,
        })
    start_epoch = len(record["epochs"])
    step = start_epoch * plan.steps_per_epoch
    for epoch in range(start_epoch, args.epochs):
        start = time.perf_counter()
        loss_sum, correct = 0.0, 0
        batches = plan.batches(epoch)
        trainer.set_epoch(epoch)  # picks the epoch's augmentation
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
                    "the run is abandoned and not saved",
                    run_index, epoch + 1, batch_number + 1, record,
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
        if checkpoints is not None and epoch + 1 < args.epochs:
            # The last epoch's state goes straight into the results file.
            checkpoints.save(trainer, record, step)
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


#: Settings compared between a checkpoint and the command line, with the flag to use.
_RESUME_SETTINGS = {
    "epochs": "--epochs", "batch_size": "--batch-size", "max_lr": "--max-lr",
    "optimizer": None, "schedule": None, "pct_start": None, "dtype": None,
    "steps_per_epoch": "--batch-size / the data", "train_examples": "--limit-train / the data",
    "test_examples": "--limit-test / the data",
    "data_sha256": "--data-dir / --limit-train / --limit-test (the data differ)",
    "random_crop_padding": "--random-crop", "hflip": "--hflip",
}

#: What a checkpoint written before a setting existed means by its absence.
#: (``torch_compile`` is recorded but not compared: it changes float rounding, not the maths.)
SETTINGS_BEFORE_THEY_EXISTED = {"random_crop_padding": 0, "hflip": False}


def _settings_mismatch(checkpoint: Checkpoint, dataset, framework, args, data, data_sha256) -> list[str]:
    """How the checkpointed run's settings differ from this command line's (empty: they fit)."""
    saved = checkpoint.record
    seed = args.seed + checkpoint.run_index
    plan = BatchPlan(len(data.train_labels), args.batch_size, seed)
    from .optim import OneCycle

    schedule = OneCycle(max_lr=args.max_lr, total_steps=args.epochs * plan.steps_per_epoch)
    now = json.loads(json.dumps(run_settings(args, data, plan, schedule, data_sha256)))
    then = saved.get("settings") or {}
    problems = []
    for key, flag in _RESUME_SETTINGS.items():
        saved_value = then.get(key, SETTINGS_BEFORE_THEY_EXISTED.get(key))
        if saved_value != now[key]:
            where = f" ({flag})" if flag else ""
            problems.append(f"{key} {saved_value!r} in the checkpoint, {now[key]!r} now{where}")
    for key, value in (("dataset", dataset), ("framework", framework), ("seed", seed)):
        if saved.get(key) != value:
            where = " (--seed)" if key == "seed" else ""
            problems.append(f"{key} {saved.get(key)!r} in the checkpoint, {value!r} now{where}")
    return problems


def _next_run_index(dataset, framework, args, checkpoints: CheckpointDir) -> int:
    """After the saved runs and after any run abandoned on a non-finite loss."""
    index = results_store.next_run_index(dataset, args.version, framework, args.results_dir)
    failed = checkpoints.failed_runs()
    return max([index] + [f + 1 for f in failed])


def _pending_run(checkpoints: CheckpointDir, dataset, framework, args, data, data_sha256):
    """The checkpoint to resume, or ``None``; tidies checkpoints of runs already finished.

    Raises:
        CheckpointError: the checkpoint does not fit this command line or the
            results folder (the message says how, and to move it away).
    """
    checkpoint = checkpoints.latest()
    if checkpoint is None:
        return None
    run = checkpoint.run_index
    move_away = (f"Run again with the checkpoint's settings to resume it, or move "
                 f"{checkpoints.path} out of the results folder to start afresh; "
                 "nothing was changed.")
    saved_path = results_store.run_dir(dataset, args.version, framework,
                                       args.results_dir) / results_store.run_file_name(run)
    if saved_path.exists():
        saved = json.loads(saved_path.read_text("utf-8"))  # valid: check_appendable read it
        same = (saved.get("seed") == checkpoint.record.get("seed")
                and saved.get("settings") == checkpoint.record.get("settings")
                and saved.get("epochs", [])[: checkpoint.epoch] == checkpoint.record["epochs"])
        if not same:
            raise CheckpointError(
                f"{checkpoint.path} is a checkpoint of run {run}, but {saved_path} holds a "
                f"different run {run}. {move_away}", [checkpoint.path])
        print(f"run {run} was completed and saved as {saved_path} before its checkpoint "
              "was deleted; deleting the checkpoint now.", flush=True)
        checkpoints.remove()
        return None
    if run in checkpoints.failed_runs():
        print(f"run {run} was abandoned on a non-finite loss; deleting its checkpoint.", flush=True)
        checkpoints.remove()
        return None
    expected = _next_run_index(dataset, framework, args, checkpoints)
    if run != expected:
        raise CheckpointError(
            f"{checkpoint.path} is a checkpoint of run {run}, but the next run of "
            f"{dataset} {args.version} {framework} is run {expected}. {move_away}",
            [checkpoint.path])
    problems = _settings_mismatch(checkpoint, dataset, framework, args, data, data_sha256)
    if problems:
        total = (checkpoint.record.get("settings") or {}).get("epochs")
        raise CheckpointError(
            f"{checkpoint.path} holds unfinished run {run} (epoch {checkpoint.epoch} of "
            f"{total}) made with other settings than this command: " + "; ".join(problems) + f". {move_away}", [checkpoint.path])
    return checkpoint


def _silence_tfds_progress() -> None:
    """TFDS draws its own progress bars while it builds a dataset; hide them too."""
    if "tensorflow_datasets" not in sys.modules:
        if importlib.util.find_spec("tensorflow_datasets") is None:
            return
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # as demos.data does
    import tensorflow_datasets as tfds

    tfds.disable_progress_bar()


def main(dataset: str, framework: str, argv=None) -> int:
    """Run the demo; returns the process exit status.

    0: every requested run completed (or the user stopped it); 1: a run hit
    a non-finite loss (the others went on); 2: bad arguments, unreadable
    results, unavailable data, or a checkpoint that does not fit (the message
    says which and how to fix it).
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
        summary = summarize(previous)[(dataset, framework)]
        print(f"{len(previous)} earlier {framework} run(s) of {dataset} {args.version}: "
              f"final test error {summary['mean']:.2f}% mean; appending.")
    if args.no_progress and not args.no_checksum:
        _silence_tfds_progress()
    try:
        data = _limit(load_dataset(dataset, args.data_dir, verify_checksum=not args.no_checksum),
                      args)
    except DataUnavailableError as error:  # DataFileError included
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{dataset}: {len(data.train_labels)} training and {len(data.test_labels)} test images "
          f"from {data.source}")
    try:  # e.g. one epoch of one batch is too short for a one-cycle schedule
        from .optim import OneCycle

        steps = BatchPlan(len(data.train_labels), args.batch_size, args.seed).steps_per_epoch
        OneCycle(max_lr=args.max_lr, total_steps=args.epochs * steps)
    except ValueError as error:
        print(f"error: --epochs {args.epochs} x {steps} batch(es) per epoch: {error}",
              file=sys.stderr)
        return 2
    data_sha256 = data_fingerprint(data)
    checkpoints = CheckpointDir(dataset, args.version, framework, args.results_dir)
    try:
        checkpoints.acquire()
        resume = _pending_run(checkpoints, dataset, framework, args, data, data_sha256)
    except CheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        checkpoints.release()
        return 2
    architecture = get_architecture(dataset)
    progress = not args.no_progress
    completed, failed = 0, 0
    try:
        while args.runs is None or completed + failed < args.runs:
            if resume is not None:
                run_index = resume.run_index
                print(f"resuming run {run_index} after epoch {resume.epoch} of {args.epochs} "
                      f"from {resume.path}", flush=True)
            else:
                run_index = _next_run_index(dataset, framework, args, checkpoints)
            try:
                record = train_run(framework, architecture, data, args, run_index, progress,
                                   checkpoints=checkpoints, resume=resume, data_sha256=data_sha256)
            except NonFiniteLossError as error:
                print(f"error: {error}", file=sys.stderr, flush=True)
                note = checkpoints.mark_failed(run_index, str(error), error.record)
                checkpoints.remove()
                print(f"noted in {note}, so that its seed is not tried again.", file=sys.stderr,
                      flush=True)
                failed += 1
                continue
            finally:
                resume = None
            path = results_store.save_run(record, args.results_dir)
            checkpoints.remove()
            completed += 1
            print(f"saved run {run_index} to {path}", flush=True)
    except KeyboardInterrupt:
        try:
            left = checkpoints.latest()
        except CheckpointError:
            left = None
        where = (f"run {left.run_index} resumes after epoch {left.epoch} when you run the same "
                 "command again" if left is not None else
                 "the interrupted run had no completed epoch and was discarded")
        print(f"\nstopped; {completed} run(s) completed and saved in this session; {where}.",
              file=sys.stderr)
        return 0
    finally:
        checkpoints.release()
    return 1 if failed else 0

"""What every demo runs: load the data, then train and save run after run.

``demos/fashion_mnist_torch.py`` and its twins (and ``python -m demos``) call
:func:`main` with a dataset of :mod:`demos.registry` and a framework of
:mod:`demos.trainers`; it reads top to bottom:

1. the command line (:mod:`demos.cli`; defaults from the demo's recipe,
   :mod:`demos.recipe`) and the results folder (:mod:`demos.results_store`);
2. the data, through the demo's loader (:mod:`demos.data`), optionally cut
   to its first ``--limit-train`` / ``--limit-test`` examples;
3. run after run, each claimed first (:mod:`demos.resume`, :mod:`demos.claims`):
   a run another worker left, resumed from its checkpoint if one fits, else a
   new one (:func:`train_run`): a freshly initialised network trained
   by the framework's trainer for ``--epochs`` epochs on the batches of a
   :class:`~demos.batch_plan.BatchPlan` (augmented as :func:`demos.recipe.augmentation`
   says, identically in both frameworks; the test set never is), evaluated
   on the test set after each epoch, checkpointed after each epoch but the
   last (:mod:`demos.checkpoint`) and, once complete, saved to
   ``results/<dataset>/<version>/<framework>/run_NNNN.json``.

Runs repeat until ``--runs`` is reached or the user stops the demo (Ctrl-C, or
SIGTERM: ``kill``, a batch system's time limit);
a restarted demo with the same version appends after the runs already saved
and resumes the run in progress after its last completed epoch, with the
same per-epoch numbers as an uninterrupted run. Any number of demos
("workers") may train one version and framework at once, on one machine or
several sharing the results folder; ``--workers N`` starts N of them
(:mod:`demos.workers`).

Numerical faults: a non-finite training loss abandons the run (nothing of it
is saved as a result, its checkpoint is deleted and a note
``failed_run_NNNN.json`` in the checkpoint folder keeps its seed from being
retried); the demo goes on with the next run and finally exits with status 1.

The runner never names a framework: the trainer does everything framework-specific.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from dataclasses import replace

from tqdm import tqdm

from . import atomic, machine, parallel, registry, results_store, trainers, workers
from .architectures import Architecture
from .batch_plan import BatchPlan
from .checkpoint import Checkpoint, CheckpointDir, CheckpointError
from .claims import ClaimLost
from .cli import parse_args
from .data import DataUnavailableError, ImageDataset
from .data.tfds_idx import silence_progress_bars
from .epochs import NonFiniteLossError, chunk_totals, epoch_entry, non_finite, print_epoch
from .optim import OneCycle
from .recipe import augmentation, data_fingerprint, run_arch, run_settings
from .records import SCHEMA_VERSION
from .resume import claim_next
from .stats import summarize

__all__ = ["parse_args", "main", "train_run", "NonFiniteLossError"]


class _CommandError(ValueError):
    """The command line cannot work (e.g. too few steps for the schedule); exit status 2."""


def main(dataset: str, framework: str, argv=None, *, prog: str | None = None) -> int:
    """Run the demo; returns the process exit status.

    0: every requested run completed (or the user stopped it); 1: a run hit
    a non-finite loss (the others went on); 2: bad arguments, unreadable
    results, unavailable data, or a checkpoint that does not fit (the message
    says which and how to fix it).
    """
    args = parse_args(dataset, framework, argv, prog=prog)
    if args.workers > 1:
        return workers.launch(dataset, framework, sys.argv[1:] if argv is None else argv, args)
    demo = registry.get(dataset)
    print(f"{dataset} --arch {args.arch}: {args.parameters:,} parameters", flush=True)
    try:
        _report_earlier_runs(dataset, framework, args)
        data = _load_data(demo, args)
        _check_schedule(args, data)
    except (results_store.ResultsError, DataUnavailableError, _CommandError) as error:
        print(f"error: {error}", file=sys.stderr)  # DataFileError is a DataUnavailableError
        return 2
    data_sha256 = data_fingerprint(data)
    checkpoints = CheckpointDir(dataset, args.version, framework, args.results_dir,
                                lease_seconds=args.lease_seconds)
    try:
        checkpoints.acquire()
        with atomic.sigterm_stops():
            return _train_runs(demo, framework, data, args, checkpoints, data_sha256)
    except (CheckpointError, parallel.GroupRefused) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        checkpoints.release()


def _report_earlier_runs(dataset: str, framework: str, args: argparse.Namespace) -> None:
    """Refuses a damaged results folder, or one of runs of another ``--arch``, before any
    training; names the runs appended to."""
    results_store.check_appendable(dataset, args.version, framework, args.results_dir)
    previous = results_store.load_runs(dataset, args.version, framework, args.results_dir)
    others = sorted({run_arch(r) for r in previous} - {args.arch})
    if others:
        raise _CommandError(
            f"{results_store.run_dir(dataset, args.version, framework, args.results_dir)} holds "
            f"runs of --arch {', '.join(others)}, not {args.arch}: a version keeps one "
            "network; choose another version for this one")
    if previous:
        summary = summarize(previous)[(dataset, framework)]
        print(f"{len(previous)} earlier {framework} run(s) of {dataset} {args.version}: "
              f"final test error {summary['mean']:.2f}% mean; appending.")


def _load_data(demo: registry.Demo, args: argparse.Namespace) -> ImageDataset:
    """The demo's dataset as the command line asks (``--data-dir``, ``--no-checksum``, ``--limit-*``)."""
    if args.no_progress and not args.no_checksum:
        silence_progress_bars()
    data = demo.load(args.data_dir, verify_checksum=not args.no_checksum)
    if args.limit_train is not None or args.limit_test is not None:
        data = replace(
            data,
            train_images=data.train_images[: args.limit_train],
            train_labels=data.train_labels[: args.limit_train],
            test_images=data.test_images[: args.limit_test],
            test_labels=data.test_labels[: args.limit_test],
            source=f"{data.source} (first {args.limit_train or 'all'} train / "
                   f"{args.limit_test or 'all'} test examples)",
        )
    print(f"{demo.name}: {len(data.train_labels)} training and {len(data.test_labels)} test "
          f"images from {data.source}")
    return data


def _check_schedule(args: argparse.Namespace, data: ImageDataset) -> None:
    """E.g. one epoch of one batch is too short for a one-cycle schedule."""
    steps = BatchPlan(len(data.train_labels), args.batch_size, args.seed).steps_per_epoch
    try:
        OneCycle(max_lr=args.max_lr, total_steps=args.epochs * steps)
    except ValueError as error:
        raise _CommandError(f"--epochs {args.epochs} x {steps} batch(es) per epoch: {error}") from None


class _Session:
    """What this demo did so far: runs saved and failed, and the runs it trains now
    (one, or a group's with ``--parallel-runs``)."""

    def __init__(self):
        self.completed, self.failed, self.works = 0, 0, []


def _train_runs(demo: registry.Demo, framework: str, data: ImageDataset, args: argparse.Namespace,
                checkpoints: CheckpointDir, data_sha256: str) -> int:
    """Claim and train run after run (or ``--parallel-runs`` runs at a time, through
    :mod:`demos.parallel`) until ``--runs``, Ctrl-C or SIGTERM, each saved when complete;
    the exit status.

    Raises:
        CheckpointError: a claimed run's checkpoint does not fit (exit status 2).
    """
    session = _Session()
    if args.parallel_runs > 1:  # a K that cannot work is refused before any run is claimed
        parallel.check_group_fits(framework, demo.architecture, data, args)
    try:
        while args.runs is None or session.completed + session.failed < args.runs:
            if args.parallel_runs > 1:
                left = args.parallel_runs if args.runs is None else min(
                    args.parallel_runs, args.runs - session.completed - session.failed)
                session.works = claim_next(checkpoints, demo.name, framework, args, data,
                                           data_sha256, count=left)
                parallel.train_claimed_group(demo, framework, data, args, checkpoints, session,
                                             data_sha256)
            else:
                session.works = claim_next(checkpoints, demo.name, framework, args, data, data_sha256)
                _train_claimed(demo, framework, data, args, checkpoints, session, data_sha256)
    except KeyboardInterrupt:
        _report_stop(checkpoints, session)
        return 0
    return 1 if session.failed else 0


def _train_claimed(demo: registry.Demo, framework: str, data: ImageDataset,
                   args: argparse.Namespace, checkpoints: CheckpointDir, session: _Session,
                   data_sha256: str) -> None:
    """Train the session's claimed run and save it (or note it failed on a non-finite
    loss, or leave it to the worker that took it over); counted in ``session``. A
    Ctrl-C (or SIGTERM) during the saving is held back until the run is saved and counted."""
    (work,) = session.works
    run_index, resume = work.run_index, work.checkpoint
    if resume is not None:
        print(f"resuming run {run_index} after epoch {resume.epoch} of {args.epochs} "
              f"from {resume.path}", flush=True)
    try:
        record = train_run(framework, demo.entry(args.arch).architecture, data, args, run_index,
                           not args.no_progress, checkpoints=checkpoints, resume=resume,
                           data_sha256=data_sha256)
    except NonFiniteLossError as error:
        note_failed(checkpoints, session, work, error)
        return
    except ClaimLost as lost:
        print(f"warning: {lost}.", file=sys.stderr, flush=True)
        session.works = []
        return
    save_claimed(checkpoints, session, work, record, args)


def note_failed(checkpoints: CheckpointDir, session: _Session, work, error: NonFiniteLossError) -> None:
    """Abandon ``work``'s run on ``error`` (a non-finite loss): say so, note it so that its seed
    is not tried again, delete its checkpoints, finish its claim; counted in ``session``."""
    print(f"error: {error}", file=sys.stderr, flush=True)
    with atomic.deferred_stop():
        note = checkpoints.mark_failed(work.run_index, str(error), error.record)
        checkpoints.remove(work.run_index)
        work.claim.finish()
        session.failed += 1
        session.works = [w for w in session.works if w is not work]
        print(f"noted in {note}, so that its seed is not tried again.", file=sys.stderr,
              flush=True)


def save_claimed(checkpoints: CheckpointDir, session: _Session, work, record: dict,
                 args: argparse.Namespace) -> None:
    """Save ``work``'s finished run (unless another worker took it over or saved it), delete its
    checkpoints, finish its claim; counted in ``session``. Ctrl-C and SIGTERM are held back meanwhile."""
    with atomic.deferred_stop():
        session.works = [w for w in session.works if w is not work]
        try:
            work.claim.verify()
            path = results_store.save_run(record, args.results_dir)
        except (ClaimLost, results_store.ResultsError) as lost:  # ResultsError: saved meanwhile
            print(f"warning: {lost}.", file=sys.stderr, flush=True)
            return
        checkpoints.remove(work.run_index)
        work.claim.finish()
        session.completed += 1
        print(f"saved run {work.run_index} to {path}", flush=True)


def _report_stop(checkpoints: CheckpointDir, session: _Session) -> None:
    wheres = []
    for work in session.works:
        try:
            left = checkpoints.latest(work.run_index)
        except CheckpointError:
            left = None
        if left is not None:
            wheres.append(f"run {left.run_index} resumes after epoch {left.epoch} when you run "
                          "the same command again")
        else:
            wheres.append(f"run {work.run_index} had no completed epoch: it starts afresh when "
                          "you run the same command again")
    where = "; ".join(wheres) or "no run was in progress"
    print(f"\nstopped; {session.completed} run(s) completed and saved in this session; {where}.",
          file=sys.stderr)


def train_run(framework: str, architecture: Architecture, data: ImageDataset,
              args: argparse.Namespace, run_index: int, progress: bool = True, *,
              checkpoints: CheckpointDir | None = None, resume: Checkpoint | None = None,
              data_sha256: str | None = None) -> dict:
    """Train one run and return its record (not yet saved).

    Args:
        checkpoints: where to checkpoint the run after each epoch but the last
            (its lock must be held); ``None``: no checkpoints.
        resume: a checkpoint of this run to continue from (its settings must
            match; :func:`demos.resume.pending_run` checks them).
        data_sha256: :func:`demos.recipe.data_fingerprint` of ``data`` (computed when ``None``).

    Raises:
        NonFiniteLossError: naming the run, epoch and step where the loss stopped being finite.
    """
    seed = args.seed + run_index
    plan = BatchPlan(len(data.train_labels), args.batch_size, seed)
    schedule = OneCycle(max_lr=args.max_lr, total_steps=args.epochs * plan.steps_per_epoch)
    learning_rates = schedule.learning_rates()
    trainer = trainers.trainer_class(framework).from_args(
        args, architecture, schedule, data.train_images, data.train_labels, seed=seed,
        augment=augmentation(args, data, seed))
    if resume is None:
        if args.init_from != framework:  # a paired run: another framework's initialisation
            trainer.load_parameters(
                trainers.trainer_class(args.init_from).initial_parameters(architecture, seed))
        record = _new_record(framework, data, args, run_index, trainer,
                             data_sha256 or data_fingerprint(data))
    else:
        if resume.run_index != run_index:
            raise ValueError(f"resume: a checkpoint of run {resume.run_index}, not {run_index}")
        checkpoints.load(resume, trainer)
        record = _resumed_record(resume.record, resume.epoch, trainer)
    step = len(record["epochs"]) * plan.steps_per_epoch
    for epoch in range(len(record["epochs"]), args.epochs):
        start = time.perf_counter()
        trainer.set_epoch(epoch)  # picks the epoch's augmentation
        loss_sum, correct = _train_epoch(trainer, plan.batches(epoch), step, epoch, args.epochs,
                                         record, progress)
        step += plan.steps_per_epoch
        train_seconds = time.perf_counter() - start
        test_loss, test_accuracy = trainer.evaluate(data.test_images, data.test_labels)
        record["epochs"].append(epoch_entry(
            epoch, loss_sum, correct, len(data.train_labels), (test_loss, test_accuracy),
            learning_rates[step - 1], start, train_seconds))
        print_epoch(run_index, args.epochs, record["epochs"][-1])
        if checkpoints is not None and epoch + 1 < args.epochs:
            # The last epoch's state goes straight into the results file.
            checkpoints.save(trainer, record, step)
    record["finished"] = _now()
    return record


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _new_record(framework: str, data: ImageDataset, args: argparse.Namespace, run_index: int,
                trainer: trainers.Trainer, data_sha256: str) -> dict:
    """A run's record before its first epoch (:mod:`demos.records`)."""
    seed = args.seed + run_index
    return {
        "schema": SCHEMA_VERSION, "dataset": data.name, "version": args.version,
        "framework": framework, "run_index": run_index, "seed": seed,
        "settings": {**run_settings(args, data, seed, data_sha256), **trainer.framework_settings()},
        "epochs": [],
        "started": _now(),
        "packages": machine.package_versions(machine.RUN_PACKAGES),
        "code": machine.code_version(),
        "host": _host(trainer),
    }


def _host(trainer: trainers.Trainer) -> dict:
    """The machine a run starts or resumes on."""
    return {"cpu": machine.cpu_name(), "cores": os.cpu_count(), "device": trainer.device_name,
            "python": platform.python_version()}


def _resumed_record(saved: dict, after_epoch: int, trainer: trainers.Trainer) -> dict:
    """A checkpointed record (a copy), noting when, on which machine, by which code and how
    it resumed."""
    record = json.loads(json.dumps(saved))
    record.setdefault("resumed", []).append({
        "after_epoch": after_epoch, "at": _now(), "code": machine.code_version(),
        "host": _host(trainer), **trainer.framework_settings(),
    })
    return record


def _train_epoch(trainer: trainers.Trainer, batches: list, step: int, epoch: int, epochs: int,
                 record: dict, progress: bool) -> tuple[float, int]:
    """One pass over ``batches`` (index arrays); returns (summed loss, correct predictions).

    The batches go to ``trainer.train_steps`` ``trainer.steps_per_call`` at a time
    (the whole epoch when ``None``); the progress bar moves after each call.

    Raises:
        NonFiniteLossError: at the first non-finite loss (``step``: global steps before this epoch).
    """
    loss_sum, correct = 0.0, 0
    chunk = trainer.steps_per_call or len(batches)
    bar = tqdm(total=len(batches), desc=f"run {record['run_index']} epoch {epoch + 1}/{epochs}",
               leave=False, disable=not progress, unit="batch", file=sys.stderr)
    for start in range(0, len(batches), chunk):
        part = batches[start:start + chunk]
        losses, corrects = trainer.train_steps(part)
        part_loss, part_correct, bad = chunk_totals(part, losses, corrects)
        if bad is not None:
            bar.close()
            raise non_finite(record, losses[bad], epoch, start + bad, len(batches), step)
        loss_sum, correct = loss_sum + part_loss, correct + part_correct
        bar.update(len(part))
    bar.close()
    return loss_sum, correct

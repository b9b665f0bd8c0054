"""``--parallel-runs K``: runs with consecutive seeds trained ``K`` at a time, each saved as its own record.

:func:`demos.runner.main` hands the runs here when ``K > 1``; the flow is the
runner's, per group:

1. the worker claims ``K`` runs at once (:func:`demos.resume.claim_next`,
   :meth:`demos.claims.RunClaims.claim_runs`): runs other workers left first,
   then a block of ``K`` consecutive new run indices (consecutive seeds), each
   index claimed by its own claim file exactly as a sequential run claims one;
2. the claimed runs that resume after the same epoch (new runs: after none) are
   trained together by the framework's group trainer
   (:func:`demos.trainers.group_class`), which builds every run exactly as the
   sequential trainer builds it for its seed, with its own batch plan and
   augmentation, checks that the runs fit in the device's memory
   (:mod:`demos.run_memory`) before it allocates them, and maps the step over
   the runs (``--parallel-mode``: ``vmap``, or ``map``, the runs one after
   another inside each compiled step; ``auto`` picks ``map`` on a CPU, where
   vmapped runs measured slower than sequential ones, and ``vmap`` elsewhere);
3. after every epoch each run gets its record's entry, exactly as a sequential
   run does, and each run is checkpointed on its own, in the sequential
   trainer's format (``run_NNNN_epoch_EEEE``): any worker, with any
   ``--parallel-runs``, resumes it;
4. a run whose loss becomes non-finite is abandoned as a sequential one is
   (message, ``failed_run_NNNN.json``, its claim finished), while the others go
   on; a run whose claim another worker took over is dropped from the group;
5. at the end every surviving run is saved as ``run_NNNN.json``: the record of a
   sequential run with that seed plus ``"group"``, ``{"runs": [...], "mode":
   ..., "devices": ...}`` (a run resumed in a group notes the group in its
   ``"resumed"`` entry instead).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Callable

from tqdm import tqdm

from . import runner, trainers
from .architectures import Architecture
from .batch_plan import BatchPlan
from .checkpoint import Checkpoint, CheckpointDir
from .claims import ClaimLost
from .data import ImageDataset
from .epochs import NonFiniteLossError, chunk_totals, epoch_entry, non_finite, print_epoch
from .optim import OneCycle
from .recipe import augmentation, data_fingerprint

__all__ = ["GroupRefused", "check_group_fits", "train_claimed_group", "train_group"]


class GroupRefused(ValueError):
    """The group cannot be built: ``K`` runs do not fit in memory, or a flag groups do not
    take; the message names the argument, what was expected and what was given."""


def check_group_fits(framework: str, architecture: Architecture, data: ImageDataset,
                     args: argparse.Namespace) -> None:
    """Before any run is claimed: that the largest group of this command line
    (``--parallel-runs``, at most ``--runs``) fits in the device's memory, and that its
    flags suit groups (the group trainer's ``check_runs``).

    Raises:
        GroupRefused: naming ``--parallel-runs`` and the largest ``K`` that fits, or the flag.
    """
    runs = args.parallel_runs if args.runs is None else min(args.parallel_runs, args.runs)
    steps = BatchPlan(len(data.train_labels), args.batch_size, args.seed).steps_per_epoch
    schedule = OneCycle(max_lr=args.max_lr, total_steps=args.epochs * steps)
    try:
        check = trainers.group_class(framework).from_args(
            args, architecture, schedule, data.train_images, data.train_labels, seeds=[args.seed],
            augments=[augmentation(args, data, args.seed)], steps_per_epoch=steps, check_runs=runs)
    except ValueError as error:  # TooManyRunsError, --step-loop, --compile...
        raise GroupRefused(str(error)) from None
    if check.advice():
        print(f"note: {check.advice()}", file=sys.stderr, flush=True)


def train_claimed_group(demo, framework: str, data: ImageDataset, args: argparse.Namespace,
                        checkpoints: CheckpointDir, session, data_sha256: str) -> None:
    """Train the session's claimed runs (``session.works``), those that resume after the same
    epoch together, and save each (or abandon it); counted in ``session``."""
    by_epoch: dict[int, list] = {}
    for work in session.works:
        by_epoch.setdefault(work.checkpoint.epoch if work.checkpoint else 0, []).append(work)
    for epoch, works in sorted(by_epoch.items(), reverse=True):
        runs = [work.run_index for work in works]
        if epoch:
            print(f"resuming {_span(runs)} after epoch {epoch} of {args.epochs}", flush=True)

        def lost(k: int, error: Exception, works=works) -> None:
            if isinstance(error, NonFiniteLossError):
                runner.note_failed(checkpoints, session, works[k], error)
            else:  # ClaimLost: another worker took the run over
                print(f"warning: {error}.", file=sys.stderr, flush=True)
                session.works = [w for w in session.works if w is not works[k]]

        try:
            records = train_group(framework, demo.architecture, data, args, runs, not args.no_progress,
                                  checkpoints=checkpoints, resumes=[w.checkpoint for w in works],
                                  data_sha256=data_sha256, lost=lost)
        except GroupRefused:
            for work in session.works:  # nothing was trained: the runs are left as they were
                work.claim.undo()
            session.works = []
            raise
        for k, record in records.items():
            runner.save_claimed(checkpoints, session, works[k], record, args)


def train_group(framework: str, architecture: Architecture, data: ImageDataset, args: argparse.Namespace,
                runs: list[int], progress: bool = True, *, checkpoints: CheckpointDir | None = None,
                resumes: list[Checkpoint | None] | None = None, data_sha256: str | None = None,
                lost: Callable[[int, Exception], None] | None = None) -> dict[int, dict]:
    """Train the runs ``runs`` together; returns ``{k: record}`` of the runs that finished.

    The records are those :func:`demos.runner.train_run` makes for these runs, plus
    ``"group"``. ``resumes``: each run's checkpoint to resume (all after the same
    epoch) or ``None``s. ``lost(k, error)`` is told of run ``k`` abandoned on a
    non-finite loss (:class:`demos.epochs.NonFiniteLossError`) or taken over by
    another worker (:class:`demos.claims.ClaimLost`); the others go on.

    Raises:
        GroupRefused: the group does not fit in memory or a refused flag (nothing trained).
    """
    seeds = [args.seed + run for run in runs]
    plans = [BatchPlan(len(data.train_labels), args.batch_size, seed) for seed in seeds]
    steps = plans[0].steps_per_epoch
    schedule = OneCycle(max_lr=args.max_lr, total_steps=args.epochs * steps)
    try:
        group = trainers.group_class(framework).from_args(
            args, architecture, schedule, data.train_images, data.train_labels, seeds=seeds,
            augments=[augmentation(args, data, seed) for seed in seeds], steps_per_epoch=steps)
    except ValueError as error:  # TooManyRunsError, --step-loop, --compile...
        raise GroupRefused(str(error)) from None
    info = {"runs": list(runs), **group.group_settings()}
    print(f"training {_span(runs)} together ({info['mode']} over {info['devices']} device(s), "
          f"estimated {group.memory['needed_bytes'] / 2**30:.2f} GiB per device)", flush=True)
    resumes = resumes or [None] * len(runs)
    if resumes[0] is None:
        if args.init_from != framework:  # paired runs: another framework's initialisations
            source = trainers.trainer_class(args.init_from)
            group.load_parameters([source.initial_parameters(architecture, seed) for seed in seeds])
        sha = data_sha256 or data_fingerprint(data)
        records = [{**runner._new_record(framework, data, args, run, group, sha), "group": info} for run in runs]
    else:
        states = [group.run_state(k) for k in range(len(runs))]
        for resume, state in zip(resumes, states):
            checkpoints.load(resume, state)
        group.load_run_states(states)
        records = [runner._resumed_record(resume.record, resume.epoch, group) for resume in resumes]
        for record in records:
            record["resumed"][-1]["group"] = info
    active = list(range(len(runs)))
    _train_epochs(group, data, args, plans, records, active, checkpoints, progress, lost or _say)
    finished = runner._now()
    return {k: dict(records[k], finished=finished) for k in active}


def _say(k: int, error: Exception) -> None:
    print(f"error: {error}", file=sys.stderr, flush=True)


def _span(runs: list[int]) -> str:
    """``"runs 4, 5, 6"``, or ``"run 4"`` for one."""
    return f"runs {', '.join(map(str, runs))}" if len(runs) > 1 else f"run {runs[0]}"


def _train_epochs(group, data: ImageDataset, args: argparse.Namespace, plans: list[BatchPlan],
                  records: list[dict], active: list[int], checkpoints: CheckpointDir | None,
                  progress: bool, lost: Callable[[int, Exception], None]) -> None:
    """The group's epochs after the records' last; drops abandoned runs from ``active``."""
    steps = plans[0].steps_per_epoch
    learning_rates = OneCycle(max_lr=args.max_lr, total_steps=args.epochs * steps).learning_rates()
    for epoch in range(len(records[0]["epochs"]), args.epochs):
        start = time.perf_counter()
        group.set_epoch(epoch)
        totals, errors = _train_group_epoch(group, [plan.batches(epoch) for plan in plans], epoch * steps,
                                            epoch, args.epochs, records, active, progress)
        train_seconds = time.perf_counter() - start
        for k, error in errors.items():
            active.remove(k)
            lost(k, error)
        evaluations = group.evaluate(data.test_images, data.test_labels)
        for k in active:
            records[k]["epochs"].append(epoch_entry(
                epoch, *totals[k], len(data.train_labels), evaluations[k],
                learning_rates[(epoch + 1) * steps - 1], start, train_seconds))
            print_epoch(records[k]["run_index"], args.epochs, records[k]["epochs"][-1])
        if checkpoints is not None and epoch + 1 < args.epochs:
            for k in list(active):  # each run on its own, as a sequential run is checkpointed
                try:
                    checkpoints.save(group.run_state(k), records[k], (epoch + 1) * steps)
                except ClaimLost as error:
                    active.remove(k)
                    lost(k, error)
        if not active:
            return


def _train_group_epoch(group, batches: list[list], step: int, epoch: int, epochs: int, records: list[dict],
                       active: list[int], progress: bool) -> tuple[dict, dict]:
    """One epoch of every run (``batches[k]``: run ``k``'s); returns ``{k: (summed loss, correct)}``
    of the active runs that stay finite and ``{k: NonFiniteLossError}`` of those that do not."""
    count = len(batches[0])
    chunk = group.steps_per_call or count
    totals = {k: (0.0, 0) for k in active}
    errors: dict = {}
    bar = tqdm(total=count, desc=f"{_span([records[k]['run_index'] for k in active])} epoch {epoch + 1}/{epochs}",
               leave=False, disable=not progress, unit="batch", file=sys.stderr)
    for start in range(0, count, chunk):
        parts = [run[start:start + chunk] for run in batches]
        losses, corrects = group.train_steps(parts)
        for k in [k for k in totals if k not in errors]:
            loss_sum, correct, bad = chunk_totals(parts[k], losses[k], corrects[k])
            if bad is not None:
                errors[k] = non_finite(records[k], losses[k][bad], epoch, start + bad, count, step)
                continue
            totals[k] = (totals[k][0] + loss_sum, totals[k][1] + correct)
        bar.update(len(parts[0]))
    bar.close()
    return {k: v for k, v in totals.items() if k not in errors}, errors

"""``--parallel-runs K``: runs with consecutive seeds trained ``K`` at a time, each saved as its own record.

:func:`demos.runner.main` hands the runs here when ``K > 1`` (or when the
checkpoint to resume is a group's); the flow is the runner's, per group:

1. the group's runs are the next ``K`` run indices (fewer for the last group
   of ``--runs``); the framework's group trainer (:func:`demos.trainers.group_class`)
   builds every run exactly as the sequential trainer builds it for its seed,
   with its own batch plan and augmentation, checks that ``K`` runs fit in
   the device's memory (:mod:`demos.run_memory`) before it allocates them,
   and trains them together (``--parallel-mode``: ``vmap``, or ``map``, the
   runs one after another inside each compiled step; ``auto`` picks ``map``
   on a CPU, where vmapped runs measured slower than sequential ones, and
   ``vmap`` elsewhere);
2. after every epoch each run gets its record's entry, exactly as a
   sequential run does, and the group is checkpointed as one entry of the
   checkpoint folder (its lead run's name; ``meta.json``'s record carries
   every run's record under ``"group"``);
3. a run whose loss becomes non-finite is abandoned as a sequential one is
   (message, ``failed_run_NNNN.json``), while the others go on;
4. at the end every surviving run is saved as ``run_NNNN.json``: the record
   of a sequential run with that seed plus ``"group"``, ``{"runs": [...],
   "mode": ..., "devices": ...}``.

Resume (:func:`pending_group`, called by :func:`demos.resume.pending_run`):
a restarted demo resumes a group's checkpoint, whatever ``--parallel-runs``
now says, with the settings checks of a sequential run; runs of the group
that were already saved (a kill between two saves) or abandoned are trained
along but not saved again. A sequential run in progress is finished first.
"""

from __future__ import annotations

import argparse
import sys
import time

from tqdm import tqdm

from . import results_store, runner, trainers
from .architectures import Architecture
from .batch_plan import BatchPlan
from .checkpoint import Checkpoint, CheckpointDir, CheckpointError
from .data import ImageDataset
from .optim import OneCycle
from .recipe import augmentation, data_fingerprint
from .resume import _settings_mismatch, next_run_index

__all__ = ["uses_groups", "is_group", "train_groups", "train_group", "pending_group"]


def is_group(checkpoint: Checkpoint | None) -> bool:
    """Whether ``checkpoint`` holds a group of parallel runs."""
    return checkpoint is not None and "group" in checkpoint.record


def uses_groups(args: argparse.Namespace, resume: Checkpoint | None) -> bool:
    """Whether the demo trains groups: ``--parallel-runs`` above 1, or a group to resume."""
    return getattr(args, "parallel_runs", 1) > 1 or is_group(resume)


def train_groups(demo, framework: str, data: ImageDataset, args: argparse.Namespace,
                 checkpoints: CheckpointDir, resume: Checkpoint | None, data_sha256: str) -> int:
    """Group after group until ``--runs`` or Ctrl-C (the runner's loop); the exit status.

    2: a group that does not fit in memory or a flag parallel runs do not take.
    """
    completed, failed = 0, 0
    try:
        if resume is not None and not is_group(resume):  # a sequential run in progress first
            saved = runner._one_run(demo, framework, data, args, checkpoints, resume, data_sha256)
            completed, failed, resume = completed + saved, failed + (not saved), None
        while args.runs is None or completed + failed < args.runs:
            if resume is not None:
                runs = resume.record["group"]["runs"]
                print(f"resuming {_span(runs)} after epoch {resume.epoch} of {args.epochs} "
                      f"from {resume.path}", flush=True)
            else:
                first = next_run_index(demo.name, framework, args, checkpoints)
                left = args.parallel_runs if args.runs is None else args.runs - completed - failed
                runs = list(range(first, first + min(args.parallel_runs, left)))
            saved, lost = train_group(framework, demo.architecture, data, args, runs, not args.no_progress,
                                      checkpoints=checkpoints, resume=resume, data_sha256=data_sha256)
            resume = None
            for record in saved:
                path = results_store.save_run(record, args.results_dir)
                print(f"saved run {record['run_index']} to {path}", flush=True)
            checkpoints.remove()
            completed, failed = completed + len(saved), failed + lost
    except KeyboardInterrupt:
        runner._report_stop(checkpoints, completed)
        return 0
    except ValueError as error:  # from the group's construction: TooManyRunsError, refused flags
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 1 if failed else 0


def train_group(framework: str, architecture: Architecture, data: ImageDataset, args: argparse.Namespace,
                runs: list[int], progress: bool = True, *, checkpoints: CheckpointDir | None = None,
                resume: Checkpoint | None = None, data_sha256: str | None = None) -> tuple[list[dict], int]:
    """Train the runs ``runs`` together; returns (the records to save, runs abandoned now).

    The records are those :func:`demos.runner.train_run` makes for these runs,
    plus ``"group"``; runs already saved or abandoned (a resumed group) are trained along, not returned.

    Raises:
        ValueError: the group does not fit in memory (``TooManyRunsError``) or a refused flag.
    """
    seeds = [args.seed + run for run in runs]
    plans = [BatchPlan(len(data.train_labels), args.batch_size, seed) for seed in seeds]
    steps = plans[0].steps_per_epoch
    schedule = OneCycle(max_lr=args.max_lr, total_steps=args.epochs * steps)
    group = trainers.group_class(framework).from_args(
        args, architecture, schedule, data.train_images, data.train_labels, seeds=seeds,
        augments=[augmentation(args, data, seed) for seed in seeds], steps_per_epoch=steps)
    info = {"runs": list(runs), **group.group_settings()}
    print(f"training {_span(runs)} together ({info['mode']} over {info['devices']} device(s), "
          f"estimated {group.memory['needed_bytes'] / 2**30:.2f} GiB per device)", flush=True)
    if resume is None:
        if args.init_from != framework:  # paired runs: another framework's initialisations
            group.load_parameters([trainers.trainer_class(args.init_from).initial_parameters(architecture, seed)
                                   for seed in seeds])
        sha = data_sha256 or data_fingerprint(data)
        records = [{**runner._new_record(framework, data, args, run, group, sha), "group": info} for run in runs]
    else:
        checkpoints.load(resume, group)
        records = [runner._resumed_record(record, resume.epoch, group) for record in resume.record["group"]["records"]]
    done = set(checkpoints.failed_runs() if checkpoints else ()) | _saved_runs(records, args)
    active = [k for k, run in enumerate(runs) if run not in done]
    lost = _train_epochs(group, data, args, plans, records, active, checkpoints, progress,
                         resume.epoch if resume else 0)
    finished = runner._now()
    return [dict(records[k], finished=finished) for k in active], lost


def _span(runs: list[int]) -> str:
    """``"runs 4-7"``, or ``"run 4"`` for one."""
    return f"runs {runs[0]}-{runs[-1]}" if len(runs) > 1 else f"run {runs[0]}"


def _saved_runs(records: list[dict], args: argparse.Namespace) -> set[int]:
    record = records[0]
    folder = results_store.run_dir(record["dataset"], record["version"], record["framework"], args.results_dir)
    return {r["run_index"] for r in records if (folder / results_store.run_file_name(r["run_index"])).exists()}


def _train_epochs(group, data: ImageDataset, args: argparse.Namespace, plans: list[BatchPlan],
                  records: list[dict], active: list[int], checkpoints: CheckpointDir | None,
                  progress: bool, first_epoch: int) -> int:
    """The group's epochs from ``first_epoch``; drops abandoned runs from ``active``; returns their count."""
    steps = plans[0].steps_per_epoch
    learning_rates = OneCycle(max_lr=args.max_lr, total_steps=args.epochs * steps).learning_rates()
    lost = 0
    for epoch in range(first_epoch, args.epochs if active else first_epoch):
        start = time.perf_counter()
        group.set_epoch(epoch)
        totals, errors = _train_group_epoch(group, [plan.batches(epoch) for plan in plans], epoch * steps,
                                            epoch, args.epochs, records, active, progress)
        train_seconds = time.perf_counter() - start
        for k, error in errors.items():
            if checkpoints is not None:
                runner._abandon(checkpoints, error)
            else:
                print(f"error: {error}", file=sys.stderr, flush=True)
            active.remove(k)
            lost += 1
        evaluations = group.evaluate(data.test_images, data.test_labels)
        for k in active:
            records[k]["epochs"].append(runner._epoch_entry(
                epoch, *totals[k], len(data.train_labels), evaluations[k],
                learning_rates[(epoch + 1) * steps - 1], start, train_seconds))
            runner._print_epoch(records[k]["run_index"], args.epochs, records[k]["epochs"][-1])
        if not active:
            break
        if checkpoints is not None and epoch + 1 < args.epochs:
            checkpoints.save(group, _checkpoint_record(records, epoch + 1), (epoch + 1) * steps)
    return lost


def _train_group_epoch(group, batches: list[list], step: int, epoch: int, epochs: int, records: list[dict],
                       active: list[int], progress: bool) -> tuple[dict, dict]:
    """One epoch of every run (``batches[k]``: run ``k``'s); returns ``{k: (summed loss, correct)}``
    of the runs that stay finite and ``{k: NonFiniteLossError}`` of those that do not."""
    count = len(batches[0])
    chunk = group.steps_per_call or count
    totals = {k: (0.0, 0) for k in active}
    errors: dict = {}
    runs = [records[k]["run_index"] for k in active]
    bar = tqdm(total=count, desc=f"{_span(runs)} epoch {epoch + 1}/{epochs}",
               leave=False, disable=not progress, unit="batch", file=sys.stderr)
    for start in range(0, count, chunk):
        parts = [run[start:start + chunk] for run in batches]
        losses, corrects = group.train_steps(parts)
        for k in [k for k in totals if k not in errors]:
            loss_sum, correct, bad = runner.chunk_totals(parts[k], losses[k], corrects[k])
            if bad is not None:
                errors[k] = runner.non_finite(records[k], losses[k][bad], epoch, start + bad, count, step)
                continue
            totals[k] = (totals[k][0] + loss_sum, totals[k][1] + correct)
        bar.update(len(parts[0]))
    bar.close()
    return {k: v for k, v in totals.items() if k not in errors}, errors


def _checkpoint_record(records: list[dict], epochs_done: int) -> dict:
    """What a group's checkpoint keeps as its record: the lead run's identity and settings,
    ``epochs_done`` epoch numbers, and every run's record under ``"group"``."""
    lead = records[0]
    record = {key: lead[key] for key in ("schema", "dataset", "version", "framework", "run_index",
                                          "seed", "settings")}
    return {**record, "epochs": [{"epoch": e + 1} for e in range(epochs_done)],
            "group": {**lead["group"], "records": records}}


def pending_group(checkpoints: CheckpointDir, checkpoint: Checkpoint, dataset: str, framework: str,
                  args: argparse.Namespace, data: ImageDataset, data_sha256: str) -> Checkpoint | None:
    """The group checkpoint to resume, or ``None`` (its runs were all saved or abandoned: deleted).

    Raises:
        CheckpointError: other settings than this command line's, a saved run that is
            another run, or runs beyond the group's already in the results (each named).
    """
    runs = checkpoint.record["group"]["runs"]
    move_away = (f"Run again with the checkpoint's settings to resume it, or move {checkpoints.path} "
                 "out of the results folder to start afresh; nothing was changed.")
    problems = _settings_mismatch(checkpoint, dataset, framework, args, data, data_sha256)
    if problems:
        raise CheckpointError(
            f"{checkpoint.path} holds unfinished runs {runs[0]}-{runs[-1]} (epoch {checkpoint.epoch} of "
            f"{checkpoint.record['settings'].get('epochs')}) made with other settings than this command: "
            + "; ".join(problems) + f". {move_away}", [checkpoint.path])
    saved = {r["run_index"]: r for r in results_store.load_runs(dataset, args.version, framework, args.results_dir)}
    for record in checkpoint.record["group"]["records"]:
        other = saved.get(record["run_index"])
        if other is not None and other["epochs"][: checkpoint.epoch] != record["epochs"]:
            raise CheckpointError(f"{checkpoint.path} is a checkpoint of run {record['run_index']}, but the "
                                  f"results hold a different run {record['run_index']}. {move_away}",
                                  [checkpoint.path])
    taken = set(saved) | set(checkpoints.failed_runs())
    before = [run for run in taken if run not in runs]
    if any(run > runs[-1] for run in before) or max(before, default=-1) + 1 != runs[0]:
        raise CheckpointError(
            f"{checkpoint.path} is a checkpoint of runs {runs[0]}-{runs[-1]}, but the next run of "
            f"{dataset} {args.version} {framework} is run {max(taken, default=-1) + 1}. {move_away}",
            [checkpoint.path])
    if taken.issuperset(runs):
        print(f"runs {runs[0]}-{runs[-1]} were all saved or abandoned before their checkpoint was "
              "deleted; deleting it now.", flush=True)
        checkpoints.remove()
        return None
    return checkpoint

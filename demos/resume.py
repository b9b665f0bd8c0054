"""Which run a demo trains next, and whether it resumes a checkpointed one.

A demo restarted with the same version and settings resumes the run in
progress after its last completed epoch; a checkpoint made under other
settings (:data:`demos.recipe.RUN_SETTINGS`), of a run already saved, of a
run abandoned on a non-finite loss, or of an unexpected run is never
trained on: it is tidied away when that is safe, refused otherwise with a
message naming it and the fix.
"""

from __future__ import annotations

import argparse
import json

from . import results_store
from .checkpoint import Checkpoint, CheckpointDir, CheckpointError
from .data import ImageDataset
from .recipe import RUN_SETTINGS, run_settings, saved_setting

__all__ = ["next_run_index", "pending_run"]


def next_run_index(dataset: str, framework: str, args: argparse.Namespace,
                   checkpoints: CheckpointDir) -> int:
    """After the saved runs and after any run abandoned on a non-finite loss."""
    index = results_store.next_run_index(dataset, args.version, framework, args.results_dir)
    failed = checkpoints.failed_runs()
    return max([index] + [f + 1 for f in failed])


def pending_run(checkpoints: CheckpointDir, dataset: str, framework: str, args: argparse.Namespace,
                data: ImageDataset, data_sha256: str) -> Checkpoint | None:
    """The checkpoint to resume, or ``None``; tidies checkpoints of runs already finished.

    Raises:
        CheckpointError: the checkpoint does not fit this command line or the
            results folder (the message says how, and to move it away).
    """
    checkpoint = checkpoints.latest()
    if checkpoint is None:
        return None
    if "group" in checkpoint.record:  # parallel runs (--parallel-runs)
        from .parallel import pending_group

        return pending_group(checkpoints, checkpoint, dataset, framework, args, data, data_sha256)
    run = checkpoint.run_index
    move_away = (f"Run again with the checkpoint's settings to resume it, or move "
                 f"{checkpoints.path} out of the results folder to start afresh; "
                 "nothing was changed.")
    if _finished(checkpoint, checkpoints, dataset, framework, args, move_away):
        return None
    expected = next_run_index(dataset, framework, args, checkpoints)
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
            f"{total}) made with other settings than this command: " + "; ".join(problems)
            + f". {move_away}", [checkpoint.path])
    return checkpoint


def _finished(checkpoint: Checkpoint, checkpoints: CheckpointDir, dataset: str, framework: str,
              args: argparse.Namespace, move_away: str) -> bool:
    """Deletes the checkpoint of a run already saved or abandoned (a demo killed in between).

    Raises:
        CheckpointError: a saved run of the same index is another run.
    """
    run = checkpoint.run_index
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
        return True
    if run in checkpoints.failed_runs():
        print(f"run {run} was abandoned on a non-finite loss; deleting its checkpoint.", flush=True)
        checkpoints.remove()
        return True
    return False


def _settings_mismatch(checkpoint: Checkpoint, dataset: str, framework: str,
                       args: argparse.Namespace, data: ImageDataset, data_sha256: str) -> list[str]:
    """How the checkpointed run's settings differ from this command line's (empty: they fit)."""
    saved = checkpoint.record
    seed = args.seed + checkpoint.run_index
    now = json.loads(json.dumps(run_settings(args, data, seed, data_sha256)))
    problems = []
    for key, flag in RUN_SETTINGS.items():
        saved_value = saved_setting(saved, key)
        if saved_value != now[key]:
            where = f" ({flag})" if flag else ""
            problems.append(f"{key} {saved_value!r} in the checkpoint, {now[key]!r} now{where}")
    for key, value in (("dataset", dataset), ("framework", framework), ("seed", seed)):
        if saved.get(key) != value:
            where = " (--seed)" if key == "seed" else ""
            problems.append(f"{key} {saved.get(key)!r} in the checkpoint, {value!r} now{where}")
    return problems

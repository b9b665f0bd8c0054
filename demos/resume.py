"""Which run a worker trains next, and whether it resumes a checkpointed one.

A worker claims its next run (:mod:`demos.claims`): a run another worker left
(stopped, killed, or silent for longer than twice its lease) first, resumed
from its checkpoint after its last completed epoch, else a new one. A demo
restarted with the same version and settings therefore resumes the run it
was training. A checkpoint made under other settings
(:data:`demos.recipe.RUN_SETTINGS`), of a run already saved or of a run
abandoned on a non-finite loss is never trained on: it is tidied away when
that is safe, refused otherwise (the claim given back) with a message naming
it and the fix.

A worker that trains ``K`` runs at a time (``--parallel-runs K``) claims ``K`` at
once: runs others left first, then a block of ``K`` consecutive new indices.
Each run of a group is checkpointed on its own, in the sequential format, so
any worker resumes it, whatever its ``--parallel-runs``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

from . import results_store
from .checkpoint import Checkpoint, CheckpointDir, CheckpointError
from .claims import Claim
from .data import ImageDataset
from .recipe import RUN_SETTINGS, run_settings, saved_setting

__all__ = ["Work", "next_run_index", "claim_next"]


@dataclass(frozen=True)
class Work:
    """A claimed run: its claim, and the checkpoint to resume it from (``None``: from the start)."""

    claim: Claim
    checkpoint: Checkpoint | None

    @property
    def run_index(self) -> int:
        return self.claim.run_index


def next_run_index(dataset: str, framework: str, args: argparse.Namespace,
                   checkpoints: CheckpointDir) -> int:
    """After the saved runs and after any run abandoned on a non-finite loss."""
    index = results_store.next_run_index(dataset, args.version, framework, args.results_dir)
    failed = checkpoints.failed_runs()
    return max([index] + [f + 1 for f in failed])


def claim_next(checkpoints: CheckpointDir, dataset: str, framework: str, args: argparse.Namespace,
               data: ImageDataset, data_sha256: str, count: int = 1) -> list[Work]:
    """Claim this worker's next run, or up to ``count`` runs (``--parallel-runs``: free runs
    first, then a block of consecutive new ones, :meth:`demos.claims.RunClaims.claim_runs`);
    tidies runs found already saved or abandoned (fewer than ``count`` are returned then,
    at least one).

    Raises:
        CheckpointError: a claimed run's checkpoint does not fit this command line or
            the results folder (the message says how, and to move it away); every
            claim of this call was given back.
    """
    while True:
        claims = checkpoints.claims.claim_runs(
            count, first_free=lambda: next_run_index(dataset, framework, args, checkpoints),
            resumable=checkpoints.runs_in_progress())
        works = []
        try:
            for claim in claims:
                checkpoints.remove_leftovers(claim.run_index)
                checkpoint = checkpoints.latest(claim.run_index)
                if _finished(claim.run_index, checkpoint, checkpoints, dataset, framework, args):
                    claim.finish()
                    continue
                if checkpoint is not None:
                    _check_fits(checkpoint, checkpoints, dataset, framework, args, data, data_sha256)
                works.append(Work(claim, checkpoint))
        except BaseException:
            for claim in claims:  # a finished claim's files are gone already
                claim.undo()
            raise
        for claim in (w.claim for w in works):
            if claim.took_over and claim.took_over["why"] != "released":
                print(f"run {claim.run_index}: taking it over from {claim.took_over['owner']} "
                      f"(claim {claim.took_over['why']})", flush=True)
        if works:
            return works


def _move_away(checkpoints: CheckpointDir) -> str:
    return (f"Run again with the checkpoint's settings to resume it, or move "
            f"{checkpoints.path} out of the results folder to start afresh; nothing was changed.")


def _check_fits(checkpoint: Checkpoint, checkpoints: CheckpointDir, dataset: str, framework: str,
                args: argparse.Namespace, data: ImageDataset, data_sha256: str) -> None:
    """Raises CheckpointError when the checkpoint was made with other settings than ``args``."""
    problems = _settings_mismatch(checkpoint, dataset, framework, args, data, data_sha256)
    if problems:
        total = (checkpoint.record.get("settings") or {}).get("epochs")
        raise CheckpointError(
            f"{checkpoint.path} holds unfinished run {checkpoint.run_index} (epoch "
            f"{checkpoint.epoch} of {total}) made with other settings than this command: "
            + "; ".join(problems) + f". {_move_away(checkpoints)}", [checkpoint.path])


def _finished(run: int, checkpoint: Checkpoint | None, checkpoints: CheckpointDir, dataset: str,
              framework: str, args: argparse.Namespace) -> bool:
    """Whether run ``run`` is already saved or abandoned (a worker killed before it tidied
    up); deletes its checkpoint then.

    Raises:
        CheckpointError: the checkpoint is of another run than the saved run of its index.
    """
    saved_path = results_store.run_dir(dataset, args.version, framework,
                                       args.results_dir) / results_store.run_file_name(run)
    if saved_path.exists():
        if checkpoint is None:
            return True
        saved = json.loads(saved_path.read_text("utf-8"))  # complete: run files are written whole
        same = (saved.get("seed") == checkpoint.record.get("seed")
                and saved.get("settings") == checkpoint.record.get("settings")
                and saved.get("epochs", [])[: checkpoint.epoch] == checkpoint.record["epochs"])
        if not same:
            raise CheckpointError(
                f"{checkpoint.path} is a checkpoint of run {run}, but {saved_path} holds a "
                f"different run {run}. {_move_away(checkpoints)}", [checkpoint.path])
        print(f"run {run} was completed and saved as {saved_path} before its checkpoint "
              "was deleted; deleting the checkpoint now.", flush=True)
        checkpoints.remove(run)
        return True
    if run in checkpoints.failed_runs():
        if checkpoint is not None:
            print(f"run {run} was abandoned on a non-finite loss; deleting its checkpoint.",
                  flush=True)
            checkpoints.remove(run)
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

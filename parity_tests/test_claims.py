"""The claims of runs (issue 14, :mod:`demos.claims`), without training.

Concurrent claimers in separate processes never get one index twice and leave
no gap; a free claim (released, dead owner on this machine, expired lease of
another machine, unreadable file long unrenewed) is taken over, a live one never; a
creator killed while writing its claim leaves the run free; a worker whose claim was taken over learns it before its next write.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from helpers.demo_runs import DATASET, REPO, VERSION

from demos import results_store
from demos.checkpoint import CheckpointDir
from demos.claims import ClaimLost, RunClaims, claims_dir

CLAIMER = r"""
import sys
from pathlib import Path
from demos import results_store
from demos.claims import RunClaims

results, rounds, block = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
claims = RunClaims("fashion_mnist", "t1", "torch", results)
runs = results_store.run_dir("fashion_mnist", "t1", "torch", results)
runs.mkdir(parents=True, exist_ok=True)
got = []
while len(got) < rounds * block:
    held = claims.claim_runs(block, first_free=lambda: results_store.next_run_index(
        "fashion_mnist", "t1", "torch", results))
    indices = [c.run_index for c in held]
    new = [c.run_index for c in held if c.took_over is None]  # the rest: runs others left
    assert len(indices) == block and new == list(range(min(new or [0]), min(new or [0]) + len(new))), indices
    for claim in held:
        saved = runs / results_store.run_file_name(claim.run_index)
        if not saved.exists():  # else: left free by a block, then saved by its taker (the
            claim.verify()      # runner tidies such a claim in the same way)
            saved.write_text("{}")
            got.append(claim.run_index)
        claim.finish()
claims.close()
print(" ".join(map(str, got)))
"""


def claim_folder(tmp_path, **options) -> RunClaims:
    return RunClaims(DATASET, VERSION, "torch", tmp_path, **options)


def first_free(tmp_path):
    return lambda: results_store.next_run_index(DATASET, VERSION, "torch", tmp_path)


def write_claim(tmp_path, run_index: int, generation: int, **fields) -> None:
    folder = claims_dir(DATASET, VERSION, "torch", tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    data = {"format": 1, "run_index": run_index, "generation": generation, "token": "x",
            "host": "elsewhere", "machine": "elsewhere/boot/1", "pid": 1, "lease_seconds": 60.0,
            "renewed_unix": time.time(), "released": False, **fields}
    (folder / f"claim_{run_index:04d}_g{generation:04d}.json").write_text(json.dumps(data))


def test_concurrent_claimers_never_share_an_index(tmp_path):
    """Six processes claiming at once, some one run at a time, some blocks of two or three
    runs (as ``--parallel-runs K`` would; new runs consecutive, after any runs others
    left): every index exactly once, no gap."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    plans = [(24, 1), (24, 1), (24, 1), (8, 3), (8, 3), (12, 2)]
    processes = [subprocess.Popen([sys.executable, "-c", CLAIMER, str(tmp_path), str(rounds),
                                   str(block)], env=env, stdout=subprocess.PIPE, text=True)
                 for rounds, block in plans]
    got = []
    for process in processes:
        out, _ = process.communicate(timeout=120)
        assert process.returncode == 0
        got += [int(i) for i in out.split()]
    assert sorted(got) == list(range(len(got))), "an index was claimed twice or skipped"
    assert len(got) >= sum(rounds * block for rounds, block in plans)
    assert not list(claims_dir(DATASET, VERSION, "torch", tmp_path).glob("claim_*"))


def test_blocks_are_consecutive_and_live_claims_are_left_alone(tmp_path):
    a, b = claim_folder(tmp_path), claim_folder(tmp_path)
    try:
        held_a = a.claim_runs(3, first_free=first_free(tmp_path))
        held_b = b.claim_runs(2, first_free=first_free(tmp_path))
        assert [c.run_index for c in held_a] == [0, 1, 2]
        assert [c.run_index for c in held_b] == [3, 4]
        assert all(c.generation == 1 and c.took_over is None for c in held_a + held_b)
        assert a.live_runs() == {0, 1, 2, 3, 4}
    finally:
        a.close()
        b.close()
    for claim in held_a + held_b:  # released on close, for the next worker to resume
        assert json.loads(claim.path.read_text())["released"] is True


@pytest.mark.parametrize("fields, why", [
    ({"released": True}, "released"),
    ({"renewed_unix": time.time() - 121.0}, "expired"),  # 2 x 60 s lease, another machine
])
def test_free_claims_are_taken_over(fields, why, tmp_path):
    write_claim(tmp_path, 0, 1, **fields)
    claims = claim_folder(tmp_path)
    try:
        (claim,) = claims.claim_runs(1, first_free=first_free(tmp_path))
        assert (claim.run_index, claim.generation) == (0, 2)
        assert claim.took_over == {"generation": 1, "why": why, "owner": "pid 1 on elsewhere"}
    finally:
        claims.close()


def test_live_claim_of_another_machine_is_not_taken_over(tmp_path):
    """Renewed 100 s ago with a 60 s lease: late, but not twice the lease (clock skew room)."""
    write_claim(tmp_path, 0, 1, renewed_unix=time.time() - 100.0)
    claims = claim_folder(tmp_path)
    try:
        (claim,) = claims.claim_runs(1, first_free=first_free(tmp_path))
        assert claim.run_index == 1
    finally:
        claims.close()


def test_claim_of_a_dead_process_on_this_machine_is_taken_over_at_once(tmp_path):
    holder = subprocess.run([sys.executable, "-c", CLAIMER.replace("claim.finish()", "pass")
                             .replace("claims.close()", "import os; os._exit(0)"),
                             str(tmp_path / "other"), "1", "1"],
                            env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True,
                            text=True, timeout=120)
    assert holder.returncode == 0, holder.stderr
    other = tmp_path / "other"
    (results_store.run_dir(DATASET, VERSION, "torch", other) / "run_0000.json").unlink()
    claims = claim_folder(other)
    try:
        (claim,) = claims.claim_runs(1, first_free=first_free(other))
        assert (claim.run_index, claim.generation, claim.took_over["why"]) == (0, 2, "dead")
    finally:
        claims.close()


def test_a_creator_killed_while_writing_its_claim_leaves_the_run_free(tmp_path, monkeypatch):
    """Claims appear whole (written to a temporary, then linked): a worker killed before
    the link leaves only its temporary, so the next worker claims that run at once (a
    half-written claim would have looked live for twice the lease: a gap in the seeds)."""
    from demos import atomic

    def killed(*args):
        raise SystemExit("killed")

    claims = claim_folder(tmp_path, lease_seconds=60.0)
    monkeypatch.setattr(atomic.os, "link", killed)
    with pytest.raises(SystemExit):
        claims.claim_runs(1, first_free=first_free(tmp_path))
    monkeypatch.undo()
    folder = claims_dir(DATASET, VERSION, "torch", tmp_path)
    assert not list(folder.glob("claim_*"))
    stale = folder / ".tmp-claim_0000_g0001.json-1-0123abcd.tmp"  # as left by a SIGKILL
    stale.write_text('{"pid": 1, "tok')
    os.utime(stale, (time.time() - 121.0,) * 2)
    try:
        (claim,) = claims.claim_runs(1, first_free=first_free(tmp_path))
        assert (claim.run_index, claim.generation, claim.took_over) == (0, 1, None)
        assert not stale.exists(), "a stale temporary is removed"
    finally:
        claims.close()


def test_unreadable_claim_file_is_live_until_twice_the_lease_old(tmp_path):
    """A claim file that is not JSON (not written by this code, whose claims appear
    whole) is judged by its age."""
    folder = claims_dir(DATASET, VERSION, "torch", tmp_path)
    folder.mkdir(parents=True)
    empty = folder / "claim_0000_g0001.json"
    empty.touch()
    claims = claim_folder(tmp_path, lease_seconds=60.0)
    try:
        (fresh,) = claims.claim_runs(1, first_free=first_free(tmp_path))
        assert fresh.run_index == 1
        os.utime(empty, (time.time() - 121.0,) * 2)
        (old,) = claims.claim_runs(1, first_free=first_free(tmp_path))
        assert (old.run_index, old.generation, old.took_over["why"]) == (0, 2, "expired")
    finally:
        claims.close()


def test_the_lease_is_renewed_in_the_background(tmp_path):
    """Renewed again and again, polled with a generous deadline (a loaded machine can hold
    the thread or its fsyncs back for a second: a 0.2 s lease then expired here)."""
    claims = claim_folder(tmp_path, lease_seconds=2.0)
    try:
        (claim,) = claims.claim_runs(1, first_free=first_free(tmp_path))
        renewals = [json.loads(claim.path.read_text())["renewed_unix"]]
        deadline = time.monotonic() + 60
        while len(renewals) < 3:
            assert time.monotonic() < deadline, f"renewed at {renewals} only"
            time.sleep(0.05)
            renewed = json.loads(claim.path.read_text())["renewed_unix"]
            if renewed > renewals[-1]:
                renewals.append(renewed)
        assert claims.live_runs() == {0}
    finally:
        claims.close()


def test_a_joining_worker_spares_a_checkpoint_being_written(tmp_path, monkeypatch):
    """A worker that joins deletes the hidden leftovers of runs that no live worker claims.
    Another worker may claim a run and begin its checkpoint while this one reads the claims:
    that half-written checkpoint is spared (the listing comes first); a dead run's is not."""
    joining = CheckpointDir(DATASET, VERSION, "torch", tmp_path)
    joining.path.mkdir(parents=True)
    dead = joining.path / ".tmp-run_0005_epoch_0003-999-deadbeef"
    dead.mkdir()
    other, being_written = claim_folder(tmp_path), []
    read_claims = joining.claims.live_runs

    def meanwhile_another_worker_claims_and_writes():
        live = read_claims()
        (claim,) = other.claim_runs(1, first_free=first_free(tmp_path))
        being_written.append(joining.path / f".tmp-run_{claim.run_index:04d}_epoch_0001-1-0a1b2c3d")
        being_written[0].mkdir()
        return live

    monkeypatch.setattr(joining.claims, "live_runs", meanwhile_another_worker_claims_and_writes)
    try:
        joining.acquire()
        assert being_written and being_written[0].is_dir(), "a live worker's checkpoint was deleted"
        assert not dead.exists()
    finally:
        joining.release()
        other.close()


def test_a_worker_whose_claim_was_taken_over_stops_writing(tmp_path):
    """Its lease expired while it was paused: the taker's claim (generation 2) wins; the
    paused worker's checkpoint write raises ClaimLost before writing anything."""
    folder = CheckpointDir(DATASET, VERSION, "torch", tmp_path)
    folder.acquire()
    try:
        (claim,) = folder.claims.claim_runs(1, first_free=first_free(tmp_path))
        claim.verify()
        taker = claim_folder(tmp_path)
        assert taker._create(0, 2, {"generation": 1, "why": "expired", "owner": "test"})
        with pytest.raises(ClaimLost, match="another worker took it over"):
            claim.verify()
        with pytest.raises(ClaimLost):
            folder.save(object(), {"run_index": 0, "epochs": [{"epoch": 1}]}, 3)
        assert [p.name for p in folder.path.iterdir()] == [".lock"]
        taker.close()
    finally:
        folder.release()
    assert not json.loads(claim.path.read_text())["released"], "a lost claim is not rewritten"


def test_bad_lease_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"lease_seconds: expected a positive number of seconds, "
                                         r"got 0"):
        claim_folder(tmp_path, lease_seconds=0)

"""The demos under faults: resume inside a run, non-finite losses, bad input.

Every demo here trains the real Fashion-MNIST network on a few generated
28x28 images (IDX files written by :func:`make_idx_dir`, loaded with
``--data-dir DIR --no-checksum``), through :func:`demos.runner.main` in this
process or the demo script in a subprocess. Nothing is written outside
``tmp_path``. JAX tests compile the training step (the costly part, ~10-20 s
of CPU each), so there are as few of them as the guarantees allow.

The SIGKILL loop over the demo process is in ``test_demo_sigkill.py``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.demo_data import make_idx_dir
from helpers.demo_runs import DATASET, REPO, VERSION, StopAfter, demo_args, numbers, tree_bytes

from demos import results_store, runner
from demos.checkpoint import CheckpointDir, CheckpointError, checkpoint_dir
from demos.claims import claims_dir
from demos.data.tfds_idx import silence_progress_bars

# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory) -> Path:
    return make_idx_dir(tmp_path_factory.mktemp("idx"))


def runs_of(results: Path, framework: str) -> list[dict]:
    return results_store.load_runs(DATASET, VERSION, framework, results)


def ckpt_path(results: Path, framework: str) -> Path:
    return checkpoint_dir(DATASET, VERSION, framework, results)


def checkpoint_entries(results: Path, framework: str) -> list[str]:
    folder = ckpt_path(results, framework)
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


# --------------------------------------------------------------------------
# Resume inside a run
# --------------------------------------------------------------------------

@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_resumed_run_equals_uninterrupted_run(framework, idx_dir, tmp_path, monkeypatch, capsys):
    """A run resumed from its epoch-1 checkpoint gives the same numbers, bit for bit.

    Run A is uninterrupted; when its epoch-1 checkpoint is on disk the checkpoint
    folder is copied, which is exactly what a demo stopped right then leaves
    behind. A fresh demo on that copy (folder B) must resume after epoch 1 and
    produce epochs 2 and 3 as A did (losses, accuracies, learning rates).
    """
    a, b = tmp_path / "a", tmp_path / "b"
    stop = StopAfter(0, 1, copy_to=ckpt_path(b, framework))
    monkeypatch.setattr(CheckpointDir, "save", stop.method())
    assert runner.main(DATASET, framework, demo_args(idx_dir, a)) == 0
    assert stop.hit
    monkeypatch.undo()
    assert checkpoint_entries(a, framework) == [".lock"], "the saved run's checkpoint was kept"
    assert checkpoint_entries(b, framework) == ["run_0000_epoch_0001"]
    capsys.readouterr()

    assert runner.main(DATASET, framework, demo_args(idx_dir, b)) == 0
    out = capsys.readouterr().out
    assert f"resuming run 0 after epoch 1 of 3 from {ckpt_path(b, framework)}" in out
    assert re.search(r"run +0 +epoch +1/3", out) is None, "epoch 1 was trained again"
    (full,), (resumed,) = runs_of(a, framework), runs_of(b, framework)
    assert len(resumed["epochs"]) == 3
    assert numbers(resumed) == numbers(full)
    assert resumed["seed"] == full["seed"] and resumed["settings"] == full["settings"]
    assert [r["after_epoch"] for r in resumed["resumed"]] == [1]
    assert resumed["resumed"][0]["host"] == resumed["host"], "the machine it resumed on"
    assert checkpoint_entries(b, framework) == [".lock"]


def test_ctrl_c_then_restart_resumes_torch(idx_dir, tmp_path, monkeypatch, capsys):
    """Ctrl-C in run 1 after its epoch-2 checkpoint; the restarted demo finishes run 1
    from there, and both runs equal those of an uninterrupted demo."""
    interrupted, reference = tmp_path / "interrupted", tmp_path / "reference"
    monkeypatch.setattr(CheckpointDir, "save", StopAfter(1, 2, interrupt=True).method())
    assert runner.main(DATASET, "torch", demo_args(idx_dir, interrupted, runs=2)) == 0
    err = capsys.readouterr().err
    assert "run 1 resumes after epoch 2 when you run the same command again" in err
    monkeypatch.undo()
    assert [r["run_index"] for r in runs_of(interrupted, "torch")] == [0]
    assert checkpoint_entries(interrupted, "torch") == [".lock", "run_0001_epoch_0002"]

    assert runner.main(DATASET, "torch", demo_args(idx_dir, interrupted, runs=1)) == 0
    assert "resuming run 1 after epoch 2 of 3" in capsys.readouterr().out
    assert runner.main(DATASET, "torch", demo_args(idx_dir, reference, runs=2)) == 0
    got, expected = runs_of(interrupted, "torch"), runs_of(reference, "torch")
    assert [r["run_index"] for r in got] == [0, 1]
    assert [numbers(r) for r in got] == [numbers(r) for r in expected]
    assert checkpoint_entries(interrupted, "torch") == [".lock"]


@pytest.fixture
def interrupted_run(idx_dir, tmp_path, monkeypatch):
    """A results folder where torch run 0 (of 3 epochs) stopped after epoch 1."""
    results = tmp_path / "results"
    with monkeypatch.context() as patch:
        patch.setattr(CheckpointDir, "save", StopAfter(0, 1, interrupt=True).method())
        assert runner.main(DATASET, "torch", demo_args(idx_dir, results)) == 0
    assert checkpoint_entries(results, "torch") == [".lock", "run_0000_epoch_0001"]
    return results


@pytest.mark.parametrize("change, expected", [
    (["--epochs", "4"], "epochs 3 in the checkpoint, 4 now (--epochs)"),
    (["--max-lr", "0.02"], "max_lr 0.01 in the checkpoint, 0.02 now (--max-lr)"),
    (["--seed", "4"], "seed 3 in the checkpoint, 4 now (--seed)"),
    (["--batch-size", "8"], "batch_size 16 in the checkpoint, 8 now (--batch-size)"),
    (["--limit-train", "32"], "train_examples 40 in the checkpoint, 32 now"),
])
def test_checkpoint_with_other_settings_is_refused(change, expected, interrupted_run, idx_dir, capsys):
    before = tree_bytes(interrupted_run)
    argv = demo_args(idx_dir, interrupted_run)
    for i in range(0, len(change), 2):  # replace the flag's value (or add the flag)
        if change[i] in argv:
            argv[argv.index(change[i]) + 1] = change[i + 1]
        else:
            argv += change[i:i + 2]
    capsys.readouterr()
    assert runner.main(DATASET, "torch", argv) == 2
    err = capsys.readouterr().err
    path = ckpt_path(interrupted_run, "torch")
    assert f"{path / 'run_0000_epoch_0001'} holds unfinished run 0 (epoch 1 of 3)" in err
    assert expected in err
    assert f"move {path} out of the results folder" in err and "Traceback" not in err
    assert tree_bytes(interrupted_run) == before, "a refused checkpoint must be left untouched"


def test_damaged_checkpoint_is_reported_not_discarded(interrupted_run, idx_dir, capsys):
    entry = ckpt_path(interrupted_run, "torch") / "run_0000_epoch_0001"
    (entry / "meta.json").write_text('{"format": 1, "record": ')  # cut short
    before = tree_bytes(interrupted_run)
    capsys.readouterr()
    assert runner.main(DATASET, "torch", demo_args(idx_dir, interrupted_run)) == 2
    err = capsys.readouterr().err
    assert f"{entry} is a damaged checkpoint (meta.json unreadable" in err
    assert "Move it out of the results folder" in err
    assert tree_bytes(interrupted_run) == before


def test_checkpoint_of_an_already_saved_run_is_deleted(idx_dir, tmp_path, monkeypatch, capsys):
    """Killed after the run file was written but before its checkpoint was deleted:
    the next start sees the run saved, deletes the checkpoint and starts the next run."""
    results, copy = tmp_path / "results", tmp_path / "copy"
    stop = StopAfter(0, 2, copy_to=copy)
    monkeypatch.setattr(CheckpointDir, "save", stop.method())
    assert runner.main(DATASET, "torch", demo_args(idx_dir, results)) == 0
    monkeypatch.undo()
    saved = results_store.run_dir(DATASET, VERSION, "torch", results) / "run_0000.json"
    run0 = saved.read_bytes()
    shutil.copytree(copy, ckpt_path(results, "torch"), dirs_exist_ok=True)
    capsys.readouterr()
    assert runner.main(DATASET, "torch", demo_args(idx_dir, results)) == 0
    out = capsys.readouterr().out
    assert f"run 0 was completed and saved as {saved} before its checkpoint was deleted" in out
    assert saved.read_bytes() == run0
    assert [r["run_index"] for r in runs_of(results, "torch")] == [0, 1]
    assert checkpoint_entries(results, "torch") == [".lock"]


def test_demo_of_older_code_holding_the_lock_is_waited_for(idx_dir, tmp_path, capsys):
    """Demos before the claims (issue 14) lock ``.lock`` exclusively and know nothing of
    claims: while one runs, a new demo refuses to start (and the new demos hold it
    shared, so an older demo refuses to start beside them)."""
    import fcntl

    results = tmp_path / "results"
    lock = ckpt_path(results, "torch") / ".lock"
    lock.parent.mkdir(parents=True)
    with open(lock, "w") as older:
        fcntl.flock(older, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert runner.main(DATASET, "torch", demo_args(idx_dir, results)) == 2
    err = capsys.readouterr().err
    assert f"a demo of an older version of this code is training this version and framework " \
           f"right now (it holds {lock} exclusively)" in err
    assert not results_store.run_dir(DATASET, VERSION, "torch", results).exists()

    joined = CheckpointDir(DATASET, VERSION, "torch", results)
    joined.acquire()
    try:
        with open(lock, "w") as older, pytest.raises(BlockingIOError):
            fcntl.flock(older, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        joined.release()


def test_second_demo_beside_a_live_one_trains_the_next_run(idx_dir, tmp_path, capsys):
    """A live worker's claim on run 0 (this process, still holding it) is left alone: a
    second demo on the same version trains run 1, then run 2; run 0 stays claimed."""
    results = tmp_path / "results"
    other = CheckpointDir(DATASET, VERSION, "torch", results)
    other.acquire()
    try:
        (claim,) = other.claims.claim_runs(1, first_free=lambda: 0)
        assert claim.run_index == 0
        assert runner.main(DATASET, "torch", demo_args(idx_dir, results, runs=2)) == 0
        assert [r["run_index"] for r in runs_of(results, "torch")] == [1, 2]
        claim.verify()  # still run 0's owner
    finally:
        other.release()
    assert claim.path.exists() and json.loads(claim.path.read_text())["released"] is True


def test_checkpoint_leftovers_are_cleaned_and_older_epochs_dropped(tmp_path):
    """Hidden half-written / half-deleted folders of a killed demo go at the next start;
    of two complete checkpoints (killed between rename and delete) the newer one counts."""
    import torch

    from demos.architectures import FASHION_MNIST
    from demos.optim import OneCycle
    from demos.train_torch import TorchTrainer

    rng = np.random.default_rng(0)
    trainer = TorchTrainer(FASHION_MNIST, OneCycle(0.01, 4), rng.random((8, 28, 28, 1), np.float32),
                           rng.integers(0, 10, 8), seed=0, batch_size=8)
    record = {"run_index": 2, "seed": 2, "settings": {}, "epochs": [{"epoch": 1}]}
    folder = CheckpointDir(DATASET, VERSION, "torch", tmp_path)
    folder.acquire()
    first = folder.save(trainer, record, 1)
    trainer.train_step(np.arange(8))
    keep_old = tmp_path / "old"
    shutil.copytree(first, keep_old)
    second = folder.save(trainer, dict(record, epochs=[{"epoch": 1}, {"epoch": 2}]), 2)
    assert not first.exists()
    shutil.copytree(keep_old, first)  # as if killed before the old one was deleted
    (folder.path / ".tmp-run_0002_epoch_0003-1-abc").mkdir()
    (folder.path / ".trash-run_0002_epoch_0001-1-abc").mkdir()
    folder.release()

    again = CheckpointDir(DATASET, VERSION, "torch", tmp_path)
    again.acquire()
    assert sorted(p.name for p in again.path.iterdir()) == [
        ".lock", "run_0002_epoch_0001", "run_0002_epoch_0002"]
    latest = again.latest()
    assert (latest.path, latest.epoch, latest.global_step) == (second, 2, 2)
    fresh = TorchTrainer(FASHION_MNIST, OneCycle(0.01, 4), rng.random((8, 28, 28, 1), np.float32),
                         rng.integers(0, 10, 8), seed=1, batch_size=8)
    again.load(latest, fresh)
    for (name, p), q in zip(trainer.model.state_dict().items(), fresh.model.state_dict().values()):
        assert torch.equal(p, q), name
    assert fresh.scheduler.last_epoch == trainer.scheduler.last_epoch == 1
    again.remove()
    assert sorted(p.name for p in again.path.iterdir()) == [".lock"]
    again.release()



def test_a_run_taken_over_after_joining_loses_its_leftovers(tmp_path):
    """A worker that joined the folder before another one was killed mid-write, then takes
    over that worker's run, removes the run's hidden leftovers when it claims it (joining
    cleaned only what was there then); other runs' leftovers stay for their owners."""
    import argparse
    import time

    from demos.machine import machine_id
    from demos.resume import claim_next

    folder = CheckpointDir(DATASET, VERSION, "torch", tmp_path)
    folder.acquire()
    try:
        # Run 0 was claimed by a worker that died (SIGKILL) writing its first checkpoint.
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        claims = claims_dir(DATASET, VERSION, "torch", tmp_path)
        claims.mkdir(parents=True, exist_ok=True)
        (claims / "claim_0000_g0001.json").write_text(json.dumps({
            "format": 1, "run_index": 0, "generation": 1, "token": "x", "host": "here",
            "machine": machine_id(), "pid": dead.pid, "lease_seconds": 300.0,
            "renewed_unix": time.time(),
            "released": False}))
        (folder.path / ".tmp-run_0000_epoch_0001-1-abc").mkdir()
        (folder.path / ".tmp-run_0001_epoch_0001-1-abc").mkdir()  # another run's: not ours
        args = argparse.Namespace(version=VERSION, results_dir=tmp_path)
        (work,) = claim_next(folder, DATASET, "torch", args, None, "")
        assert (work.run_index, work.claim.took_over["why"], work.checkpoint) == (0, "dead", None)
        assert sorted(p.name for p in folder.path.iterdir()) == [
            ".lock", ".tmp-run_0001_epoch_0001-1-abc"]
    finally:
        folder.release()


def test_orbax_checkpoint_round_trip_and_unexpected_entries(tmp_path):
    """JAX state (an nnx.State and an optax state) goes through orbax unchanged; a
    foreign entry in the checkpoint folder is an error naming it."""
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    class Trainer:
        def __init__(self, seed):
            self.params = nnx.state(nnx.Linear(3, 2, rngs=nnx.Rngs(seed)))
            self.opt_state = optax.adam(0.1).init(self.params)

    saved, fresh = Trainer(0), Trainer(1)
    saved.opt_state = jax.tree.map(lambda x: x + 1 if jnp.issubdtype(x.dtype, jnp.integer) else x,
                                   saved.opt_state)
    folder = CheckpointDir(DATASET, VERSION, "jax", tmp_path)
    folder.acquire()
    path = folder.save(saved, {"run_index": 0, "epochs": [{"epoch": 1}]}, 5)
    assert (path / "state").is_dir() and (path / "meta.json").is_file()
    folder.load(folder.latest(), fresh)
    for a, b in zip(jax.tree.leaves((saved.params, saved.opt_state)),
                    jax.tree.leaves((fresh.params, fresh.opt_state)), strict=True):
        assert a.dtype == b.dtype and np.array_equal(np.asarray(a), np.asarray(b))
    assert jax.tree.structure(fresh.params) == jax.tree.structure(saved.params)
    (folder.path / "notes.txt").write_text("mine")
    with pytest.raises(CheckpointError, match=re.escape(str(folder.path / "notes.txt"))):
        folder.latest()
    folder.release()


def test_ctrl_c_during_the_jax_checkpoint_write_keeps_the_epoch(idx_dir, tmp_path, monkeypatch,
                                                                capfd):
    """Ctrl-C while orbax writes epoch 1's checkpoint, its background threads at work
    (before the fix: sometimes ignored, sometimes orbax tracebacks and the epoch lost):
    the write completes, then the demo stops cleanly with the epoch kept."""
    import signal

    import orbax.checkpoint as ocp

    results = tmp_path / "results"
    wait = ocp.StandardCheckpointer.wait_until_finished
    sent = []

    def interrupted_wait(self):
        if not sent:
            sent.append(os.getpid())
            os.kill(os.getpid(), signal.SIGINT)
        return wait(self)

    monkeypatch.setattr(ocp.StandardCheckpointer, "wait_until_finished", interrupted_wait)
    assert runner.main(DATASET, "jax", demo_args(idx_dir, results)) == 0
    assert sent, "no checkpoint was written"
    out, err = capfd.readouterr()
    assert "run 0 resumes after epoch 1 when you run the same command again" in err
    assert "Traceback" not in out + err and "Event loop is closed" not in out + err
    assert checkpoint_entries(results, "jax") == [".lock", "run_0000_epoch_0001"]
    folder = CheckpointDir(DATASET, VERSION, "jax", results)
    assert folder.latest(0).epoch == 1  # complete and readable
    assert not results_store.run_dir(DATASET, VERSION, "jax", results).exists()


def test_sigterm_during_a_checkpoint_write_stops_like_ctrl_c(idx_dir, tmp_path, monkeypatch,
                                                            capfd):
    """SIGTERM (``kill``, a SLURM time limit) while run 0's epoch-1 checkpoint is being
    written: the write completes, then the demo stops as after Ctrl-C (exit 0, the epoch
    kept, its claim released) and the next start resumes there. (A handler of the test's
    own stands in for the default SIGTERM, which would end pytest, and must stay unused.)"""
    import signal

    results, sent, leaked = tmp_path / "results", [], []
    write = CheckpointDir._write

    def terminated_write(folder, *args):
        if not sent:
            sent.append(os.getpid())
            os.kill(os.getpid(), signal.SIGTERM)
        return write(folder, *args)

    monkeypatch.setattr(CheckpointDir, "_write", terminated_write)
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: leaked.append(signum))
    try:
        assert runner.main(DATASET, "torch", demo_args(idx_dir, results)) == 0
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert sent and not leaked
    out, err = capfd.readouterr()
    assert "run 0 resumes after epoch 1 when you run the same command again" in err
    assert "Traceback" not in out + err
    assert checkpoint_entries(results, "torch") == [".lock", "run_0000_epoch_0001"]
    assert CheckpointDir(DATASET, VERSION, "torch", results).latest(0).epoch == 1
    claims = list(claims_dir(DATASET, VERSION, "torch", results).glob("claim_*"))
    assert len(claims) == 1 and '"released": true' in claims[0].read_text()
    monkeypatch.undo()
    assert runner.main(DATASET, "torch", demo_args(idx_dir, results, runs=1)) == 0
    assert "resuming run 0 after epoch 1 of 3" in capfd.readouterr().out


# --------------------------------------------------------------------------
# Numerical faults
# --------------------------------------------------------------------------

@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_diverging_run_is_dropped_and_exit_status_is_1(framework, idx_dir, tmp_path, capsys):
    """--max-lr 1e30 makes the loss NaN at epoch 1, step 2 in both frameworks.

    The first step moves every parameter to ~4e28: ``q = (q_param / 100)²`` and
    the kernels' norms overflow float32, and the cosine's factor
    ``‖k‖ / (‖k‖ + q)`` is inf / inf at step 2.
    """
    results = tmp_path / "results"
    argv = demo_args(idx_dir, results, extra=["--max-lr", "1e30"])
    assert runner.main(DATASET, framework, argv) == 1
    err = capsys.readouterr().err
    assert re.search(r"run 0: the training loss became (nan|inf|-inf) at epoch 1, step 2 of 3 "
                     r"\(global step 2\); the run is abandoned and not saved", err), err
    assert not results_store.run_dir(DATASET, VERSION, framework, results).exists()
    assert checkpoint_entries(results, framework) == [".lock", "failed_run_0000.json"]
    note = json.loads((ckpt_path(results, framework) / "failed_run_0000.json").read_text())
    assert note["seed"] == 3 and "epoch 1, step 2" in note["error"]


def test_non_finite_loss_mid_run_deletes_checkpoint_and_goes_on(idx_dir, tmp_path, monkeypatch, capsys):
    """A NaN in epoch 2 of run 0 (after its epoch-1 checkpoint): run 0 is not saved, its
    checkpoint is deleted, run 1 trains and is saved; exit status 1. A restarted demo
    does not retry run 0's seed."""
    from demos.train_torch import TorchTrainer

    results = tmp_path / "results"
    real_step = TorchTrainer.train_step
    calls = []

    def step(self, indices):
        loss, correct = real_step(self, indices)
        calls.append(1)
        return (float("nan") if len(calls) == 5 else loss), correct  # epoch 2, step 2

    monkeypatch.setattr(TorchTrainer, "train_step", step)
    assert runner.main(DATASET, "torch", demo_args(idx_dir, results, runs=2)) == 1
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert "run 0: the training loss became nan at epoch 2, step 2 of 3 (global step 5)" in err
    assert [r["run_index"] for r in runs_of(results, "torch")] == [1]
    assert checkpoint_entries(results, "torch") == [".lock", "failed_run_0000.json"]
    note = json.loads((ckpt_path(results, "torch") / "failed_run_0000.json").read_text())
    assert len(note["epochs"]) == 1

    assert runner.main(DATASET, "torch", demo_args(idx_dir, results, epochs=3)) == 0
    runs = runs_of(results, "torch")
    assert [(r["run_index"], r["seed"]) for r in runs] == [(1, 4), (2, 5)]


# --------------------------------------------------------------------------
# Bad input, through the demo's command line in a subprocess
# --------------------------------------------------------------------------

def run_demo(*args: str, framework: str = "torch", cwd: Path = REPO) -> subprocess.CompletedProcess:
    """The demo script as a user runs it. Every case here stops before any data is read or
    network built, so each call costs little more than importing the framework (whose
    trainer adds its own flags to the command line)."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([sys.executable, str(REPO / "demos" / f"{DATASET}_{framework}.py"), *args],
                          capture_output=True, text=True, timeout=120, cwd=cwd, env=env)


@pytest.mark.parametrize("version", ["../x", "/tmp/x", "", "a b", "v1/../../x", "."])
def test_bad_version_is_refused_before_anything_is_written(version, tmp_path):
    results = tmp_path / "results"
    done = run_demo(version, "--results-dir", str(results), "--epochs", "1", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "invalid version" in done.stderr and repr(version) in done.stderr
    assert "Traceback" not in done.stderr
    assert sorted(tmp_path.iterdir()) == [], "nothing may be created"


@pytest.mark.parametrize("framework, args, message", [
    ("torch", ["--device", "foo"], "argument --device: expected a torch device such as cpu or cuda:0, got 'foo'"),
    ("torch", ["--device", "meta"], "argument --device: expected a device that computes"),
    ("jax", ["--seed", str(2**63)], "argument --seed: expected a seed below 2**62"),
    ("torch", ["--seed", "-1"], "argument --seed: expected a non-negative integer"),
])
def test_bad_device_and_seed_are_argument_errors(framework, args, message, tmp_path):
    done = run_demo("v1", "--results-dir", str(tmp_path / "r"), *args, framework=framework, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert sorted(tmp_path.iterdir()) == [], "nothing may be created"


def test_corrupt_results_file_blocks_appending(tmp_path, idx_dir):
    results = tmp_path / "results"
    folder = results_store.run_dir(DATASET, VERSION, "torch", results)
    folder.mkdir(parents=True)
    bad = folder / "run_0000.json"
    bad.write_bytes(b'{"schema": 1, "dataset": "fashion_mn')
    done = run_demo(*demo_args(idx_dir, results))
    assert done.returncode == 2
    assert str(bad) in done.stderr and "Refusing to add runs" in done.stderr
    assert "Traceback" not in done.stderr
    assert bad.read_bytes() == b'{"schema": 1, "dataset": "fashion_mn'
    assert sorted(p.name for p in results.rglob("*")) == ["fashion_mnist", "run_0000.json", "t1", "torch"]


def _truncate(folder: Path) -> tuple[Path, str]:
    path = folder / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-10])
    return path, "not a complete gzip file"


def _remove(folder: Path) -> tuple[Path, str]:
    path = folder / "t10k-images-idx3-ubyte.gz"
    path.unlink()
    return path, "lacks"


@pytest.mark.parametrize("damage", [_truncate, _remove])
def test_damaged_data_files_give_path_and_fix(damage, tmp_path):
    data, results = make_idx_dir(tmp_path / "data"), tmp_path / "results"
    path, what = damage(data)
    done = run_demo(*demo_args(data, results))
    assert done.returncode == 2, done.stderr
    assert str(path) in done.stderr and what in done.stderr
    assert "download it again" in done.stderr or "--data-dir" in done.stderr  # the fix
    assert "Traceback" not in done.stderr
    assert not results.exists()


def test_unofficial_data_without_no_checksum_is_refused(tmp_path):
    """Generated files fail the official checksum: the message names the file and the fix."""
    data, results = make_idx_dir(tmp_path / "data"), tmp_path / "results"
    done = run_demo(VERSION, "--data-dir", str(data), "--results-dir", str(results), "--epochs", "1")
    assert done.returncode == 2, done.stderr
    assert re.search(r"error: \S+-ubyte\.gz: sha256 of the decompressed contents is", done.stderr)
    assert "Replace the file with the official one" in done.stderr
    assert "Traceback" not in done.stderr
    assert not results.exists()


def test_no_checksum_needs_data_dir_and_max_lr_is_bounded(tmp_path):
    done = run_demo(VERSION, "--no-checksum", "--results-dir", str(tmp_path / "r"))
    assert done.returncode == 2 and "--no-checksum needs --data-dir" in done.stderr
    done = run_demo(VERSION, "--max-lr", "1e31", "--results-dir", str(tmp_path / "r"))
    assert done.returncode == 2 and "expected at most 1e+30" in done.stderr
    assert not (tmp_path / "r").exists()


def test_no_progress_silences_tfds_progress_bars():
    tqdm_utils = pytest.importorskip("tensorflow_datasets.core.utils.tqdm_utils")
    tqdm_utils.enable_progress_bar()
    try:
        silence_progress_bars()
        assert tqdm_utils._active is False
    finally:
        tqdm_utils.enable_progress_bar()

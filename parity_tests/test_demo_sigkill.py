"""SIGKILL the torch demo at random moments, 50 times, and check nothing saved is lost.

The demo (``demos.runner.main``, exactly what ``demos/fashion_mnist_torch.py``
runs) trains 2-epoch runs on 40 generated 28x28 images without end, and is
killed with SIGKILL after a random delay: while starting, training, writing a
checkpoint, deleting one, or writing a run file. Every tenth kill instead waits
until the demo has a committed checkpoint of a run it has not saved, stops it
(SIGSTOP), checks again and kills it (:mod:`helpers.demo_kills`): random delays
alone, timed on one run, could leave nothing to resume if the machine slowed
down. After every kill

* every run file that existed before is byte-for-byte unchanged,
* the results folder loads strictly (no partial or foreign file), and
* the next start must not fail (it resumes the checkpointed run, if any).

Finally an unkilled demo completes, and every run — many of them resumed
from a checkpoint after a kill, some more than once — has exactly the numbers
of the same run trained without interruption.

Each demo process is forked from a small server process that has already
imported torch (:class:`helpers.demo_server.DemoServer`): a fresh interpreter
would spend seconds importing torch for every kill. The forked child runs the
unchanged demo code with its stdout and stderr sent to a log file; it is a
separate process, and SIGKILL ends it as abruptly as any other. Several
workers killed at once: ``test_workers_sigkill.py``.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
from helpers.demo_data import make_idx_dir
from helpers.demo_kills import kill_with_checkpoint_left
from helpers.demo_runs import DATASET, VERSION, numbers
from helpers.demo_server import DemoServer

from demos import results_store
from demos.checkpoint import CheckpointDir

KILLS = 50
TARGETED_EVERY = 10


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("run_*.json"))}


def test_sigkill_demo_at_random_moments(tmp_path):
    data = make_idx_dir(tmp_path / "data")
    results = tmp_path / "results"
    runs_dir = results_store.run_dir(DATASET, VERSION, "torch", results)
    checkpoints = CheckpointDir(DATASET, VERSION, "torch", results)  # read only
    ckpt_dir = checkpoints.path
    argv = [VERSION, "--epochs", "2", "--batch-size", "16", "--seed", "11", "--data-dir", str(data),
            "--no-checksum", "--no-progress", "--results-dir", str(results)]
    rng = np.random.default_rng(20251130)
    server = DemoServer()
    saved: dict[str, bytes] = {}
    mid_run = mid_write = 0
    left_behind = []
    try:
        # One whole run, timed, so that the kill delays fit this machine's speed:
        # up to 1.5 runs, so kills land anywhere from start-up to the next run.
        # (The clock starts once the server answers, i.e. after its imports.)
        log = tmp_path / "timing.log"
        pid = server.start([*argv[:-1], str(tmp_path / "timing"), "--runs", "1"], log)
        started = time.monotonic()
        assert server.wait(pid) == {"signal": None, "code": 0}, log.read_text()
        longest = min(max(1.5 * (time.monotonic() - started), 0.5), 3.0)
        started = time.monotonic()
        for kill in range(KILLS):
            log = tmp_path / f"kill_{kill:02d}.log"
            pid = server.start(argv, log)  # no --runs: it would train forever
            delay = rng.uniform(0.02, longest)  # drawn for every kill: the same delays as before
            if kill % TARGETED_EVERY == TARGETED_EVERY - 1:
                left_behind.append(kill_with_checkpoint_left(pid, log, checkpoints, runs_dir))
            else:
                time.sleep(delay)
                os.kill(pid, signal.SIGKILL)
            status = server.wait(pid)
            assert status["signal"] == signal.SIGKILL, (
                f"kill {kill}: the demo ended by itself ({status}):\n{log.read_text()}")

            now = snapshot(runs_dir)
            for name, content in saved.items():
                assert now.get(name) == content, f"kill {kill}: {name} was changed or lost"
            results_store.check_appendable(DATASET, VERSION, "torch", results)
            loaded = results_store.load_runs(DATASET, VERSION, "torch", results, strict=True)
            assert [r["run_index"] for r in loaded] == list(range(len(now)))
            saved = now
            entries = [p.name for p in ckpt_dir.iterdir()] if ckpt_dir.is_dir() else []
            mid_run += any(name.startswith("run_") for name in entries)
            leftovers = [name for name in entries if name.startswith((".tmp-", ".trash-"))]
            if runs_dir.is_dir():  # save_run's hidden temp file
                leftovers += [p.name for p in runs_dir.iterdir() if p.name.startswith(".")]
            mid_write += bool(leftovers)

        log = tmp_path / "final.log"
        pid = server.start(argv + ["--runs", "1"], log)
        status = server.wait(pid)
        assert status == {"signal": None, "code": 0}, log.read_text()
        final = results_store.load_runs(DATASET, VERSION, "torch", results, strict=True)
        for name, content in saved.items():
            assert (runs_dir / name).read_bytes() == content
        assert [p.name for p in ckpt_dir.iterdir()] == [".lock"]
        killed_seconds = time.monotonic() - started

        # Each resumed run again, never interrupted: run i has seed 11 + i, so it is
        # run 0 of a demo started with --seed 11 + i.
        resumed = [r for r in final if r.get("resumed")]
        expected = []
        for record in resumed:
            reference = tmp_path / f"reference_{record['run_index']}"
            log = reference.with_suffix(".log")
            seed = argv.index("--seed") + 1
            pid = server.start([*argv[:seed], str(record["seed"]), *argv[seed + 1:-1],
                                str(reference), "--runs", "1"], log)
            assert server.wait(pid) == {"signal": None, "code": 0}, log.read_text()
            (run,) = results_store.load_runs(DATASET, VERSION, "torch", reference)
            expected.append(run)
    finally:
        server.close()

    print(f"\n{KILLS} kills (delays up to {longest:.2f} s) in {killed_seconds:.1f} s: "
          f"{len(final)} runs completed, "
          f"{len(resumed)} of them resumed after a kill; {mid_run} kills left a checkpoint "
          f"({len(left_behind)} of them waited for it), "
          f"{mid_write} left a half-written or half-deleted file")
    assert [r["seed"] for r in final] == [11 + i for i in range(len(final))]
    assert len(final) >= 5, "the demo made too little progress between kills to test much"
    assert resumed, "no kill hit a run after its first epoch's checkpoint"
    for run, epoch in left_behind:
        after = [entry["after_epoch"] for entry in final[run].get("resumed", [])]
        assert epoch in after, f"run {run} was left at epoch {epoch} but resumed after {after}"
    assert [r["seed"] for r in expected] == [r["seed"] for r in resumed]
    assert [numbers(r) for r in resumed] == [numbers(r) for r in expected]

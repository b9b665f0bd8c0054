"""Four workers on one version, each SIGKILLed at random moments, 30 times over (issue 14).

Every trial starts four torch demos (forks of :class:`helpers.demo_server.DemoServer`,
each exactly what ``demos/fashion_mnist_torch.py`` runs) on the same version,
training 2-epoch runs on 40 generated images without end, and kills each one
with SIGKILL at its own moment, drawn from a seeded generator: while it starts,
claims a run, trains, takes over a dead worker's run, writes a checkpoint or a
run file, or deletes either. In every tenth trial, worker 0 is killed instead
once it has a committed checkpoint of an unsaved run (stopped first, checked
again: :mod:`helpers.demo_kills`), so that a slowed machine cannot leave nothing
to resume. The next trial's workers find the dead workers' claims and resume
those runs. After every trial

* every run file saved before is byte-for-byte unchanged and the run folder
  loads strictly (no partial or foreign file);
* no run was ever trained by two processes at the same time (each child holds
  an exclusive ``flock`` per run while training it, see ``DemoServer``).

At the end four unkilled workers, then single ones, finish every claimed run:
the runs are 0 .. n-1 with no gap, run i has seed 11 + i (no index or seed used
twice), no claim or checkpoint is left, every run that a killed worker had
claimed was completed by another (several resumed from a checkpoint), and every
run has exactly the numbers of the same seed trained one run at a time; each
run left on purpose was resumed after the epoch it was left at.

The JAX twin is smaller (two workers, four trials: a JAX process imports and
compiles for seconds, so they run as real subprocesses sharing a persistent
compilation cache). In every trial one worker is killed at a random moment
within 2 s after its first epoch, around its orbax checkpoint writes; the other
is stopped (SIGSTOP) and killed as soon as it has a committed checkpoint of an
unsaved run, so each trial leaves a run to resume. The same checks at the end,
and each such run was resumed from the epoch it was left at.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from helpers.demo_data import make_idx_dir
from helpers.demo_kills import kill_with_checkpoint_left, try_kill_with_checkpoint_left
from helpers.demo_runs import DATASET, REPO, VERSION, numbers
from helpers.demo_server import DemoServer

from demos import results_store
from demos.checkpoint import CheckpointDir
from demos.claims import claims_dir

WORKERS = 4
TRIALS = 30
TARGETED_EVERY = 10


def run_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("run_*.json"))}


def trained_runs(logs: list[Path]) -> set[int]:
    """Every run index some worker trained an epoch of, or started to resume."""
    pattern = re.compile(r"^(?:run +(\d+) +epoch|resuming run (\d+) )", re.MULTILINE)
    return {int(a or b) for log in logs for a, b in pattern.findall(log.read_text())}


def kill_trial(server: DemoServer, argv: list[str], logs: list[Path], delays: np.ndarray,
               targeted: CheckpointDir | None = None) -> tuple[int, int] | None:
    """Start the workers together, SIGKILL each after its delay, reap them all. ``targeted``
    (the checkpoints): worker 0 is killed instead once it has a committed checkpoint of an
    unsaved run; that (run, epoch) is returned."""
    pids = [server.start(argv, log) for log in logs]
    started, left = time.monotonic(), None
    first = 0 if targeted is None else 1  # worker 0 is the targeted one
    for delay, pid in sorted(zip(delays[first:], pids[first:])):
        time.sleep(max(0.0, started + delay - time.monotonic()))
        os.kill(pid, signal.SIGKILL)
    if targeted is not None:
        runs_dir = results_store.run_dir(DATASET, VERSION, "torch", argv[-1])
        left = kill_with_checkpoint_left(pids[0], logs[0], targeted, runs_dir)
    for pid, log in zip(pids, logs):
        status = server.wait(pid)
        assert status["signal"] == signal.SIGKILL, (
            f"a worker ended by itself ({status}):\n{log.read_text()}")
    return left


def finish_claimed_runs(server: DemoServer, argv: list[str], logs: Path) -> None:
    """Four unkilled workers with --runs 2, then one at a time until no claim is left."""
    pids = [server.start([*argv, "--runs", "2"], logs / f"drain_{i}.log") for i in range(WORKERS)]
    for i, pid in enumerate(pids):
        assert server.wait(pid) == {"signal": None, "code": 0}, (logs / f"drain_{i}.log").read_text()
    claims = claims_dir(DATASET, VERSION, "torch", argv[-1])
    for attempt in range(2 * WORKERS):
        if not list(claims.glob("claim_*")):
            return
        log = logs / f"single_{attempt}.log"
        pid = server.start([*argv, "--runs", "1"], log)
        assert server.wait(pid) == {"signal": None, "code": 0}, log.read_text()
    raise AssertionError(f"claims left: {sorted(p.name for p in claims.iterdir())}")


def folders(tmp_path: Path, framework: str, epochs: int) -> tuple[Path, Path, Path, list[str]]:
    """Generated data; the results, logs and run folders; the workers' demo arguments."""
    data = make_idx_dir(tmp_path / "data")
    results, logs = tmp_path / "results", tmp_path / "logs"
    logs.mkdir()
    argv = [VERSION, "--epochs", str(epochs), "--batch-size", "16", "--seed", "11", "--data-dir",
            str(data), "--no-checksum", "--no-progress", "--results-dir", str(results)]
    return results, logs, results_store.run_dir(DATASET, VERSION, framework, results), argv


def test_four_workers_killed_at_random_moments(tmp_path):
    results, logs, runs_dir, argv = folders(tmp_path, "torch", epochs=2)
    rng = np.random.default_rng(20261202)
    server = DemoServer(exclusive=tmp_path / "exclusive")
    saved: dict[str, bytes] = {}
    checkpoints = CheckpointDir(DATASET, VERSION, "torch", results)  # read only
    left_behind = []
    try:
        # One run by four workers at once, timed: kills land from start-up to about
        # two runs later (each worker has a quarter of the machine or less).
        pids = [server.start([*argv[:-1], str(tmp_path / "timing"), "--runs", "1"],
                             logs / f"timing_{i}.log") for i in range(WORKERS)]
        started = time.monotonic()
        assert all(server.wait(pid) == {"signal": None, "code": 0} for pid in pids)
        longest = min(max(2.0 * (time.monotonic() - started), 0.5), 5.0)
        started = time.monotonic()
        for trial in range(TRIALS):
            trial_logs = [logs / f"trial_{trial:02d}_{i}.log" for i in range(WORKERS)]
            targeted = trial % TARGETED_EVERY == TARGETED_EVERY - 1
            left = kill_trial(server, argv, trial_logs, rng.uniform(0.02, longest, WORKERS),
                              checkpoints if targeted else None)
            left_behind += [left] if left else []
            now = run_files(runs_dir)
            for name, content in saved.items():
                assert now.get(name) == content, f"trial {trial}: {name} was changed or lost"
            results_store.load_runs(DATASET, VERSION, "torch", results, strict=True)
            assert server.violations() == [], f"trial {trial}: a run trained twice at once"
            saved = now
        killed_seconds = time.monotonic() - started
        claimed = trained_runs(sorted(logs.glob("trial_*.log")))
        taken_over = sum(log.read_text().count("taking it over from")
                         for log in logs.glob("trial_*.log"))
        finish_claimed_runs(server, argv, logs)
        assert server.violations() == []

        final = results_store.load_runs(DATASET, VERSION, "torch", results, strict=True)
        reference_dir = tmp_path / "one_at_a_time"
        log = logs / "reference.log"
        pid = server.start([*argv[:-1], str(reference_dir), "--runs", str(len(final))], log)
        assert server.wait(pid) == {"signal": None, "code": 0}, log.read_text()
        reference = results_store.load_runs(DATASET, VERSION, "torch", reference_dir)
    finally:
        server.close()

    resumed = [r for r in final if r.get("resumed")]
    print(f"\n{TRIALS} trials x {WORKERS} workers, {TRIALS * WORKERS} kills (delays up to "
          f"{longest:.2f} s) in {killed_seconds:.1f} s: {len(claimed)} runs claimed by killed "
          f"workers, {taken_over} takeovers of a dead worker's run, {len(final)} runs in the end, "
          f"{len(resumed)} resumed from a checkpoint")
    assert [r["run_index"] for r in final] == list(range(len(final))), "an index was skipped"
    assert [r["seed"] for r in final] == [11 + i for i in range(len(final))]
    assert claimed <= {r["run_index"] for r in final}, "a claimed run was never completed"
    for name, content in saved.items():
        assert (runs_dir / name).read_bytes() == content
    assert [p.name for p in checkpoints.path.iterdir()] == [".lock"]
    assert not list(claims_dir(DATASET, VERSION, "torch", results).glob("claim_*"))
    assert len(saved) >= 2 * WORKERS, "the workers made too little progress between kills"
    assert taken_over and resumed, "no kill left a run for another worker to resume"
    for run, epoch in left_behind:
        after = [entry["after_epoch"] for entry in final[run].get("resumed", [])]
        assert epoch in after, f"run {run} was left at epoch {epoch} but resumed after {after}"
    assert [r["seed"] for r in reference] == [r["seed"] for r in final]
    assert [numbers(r) for r in final] == [numbers(r) for r in reference]


JAX_WORKERS = 2
JAX_TRIALS = 4


def start_jax_worker(argv: list[str], log: Path, env: dict) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "demos", DATASET, "jax", *argv], env=env,
                                stdout=out, stderr=subprocess.STDOUT, cwd=REPO)


def kill(process: subprocess.Popen, log: Path) -> None:
    process.kill()
    assert process.wait() == -signal.SIGKILL, log.read_text()


def kill_jax_workers(processes: list, logs: list[Path], delay: float,
                     checkpoints: CheckpointDir, runs_dir: Path) -> tuple[int, int]:
    """SIGKILL worker 0 ``delay`` seconds after it printed its first epoch (JAX imports and
    compiles for seconds first): its orbax checkpoint writes come right after. SIGKILL worker 1
    while it is stopped with a committed checkpoint of its unsaved run, so that every trial
    leaves a checkpoint to resume (random kills alone left none in about one test in ten).
    Returns worker 1's (run, epoch) left behind."""
    (randomly, targeted), (random_log, targeted_log) = processes, logs
    deadline, kill_at, left = time.monotonic() + 300, None, None
    while randomly.returncode is None or targeted.returncode is None:
        assert time.monotonic() < deadline, "a JAX worker printed no epoch or wrote no checkpoint"
        for process, log in zip(processes, logs):
            assert process.poll() is None or process.returncode == -signal.SIGKILL, log.read_text()
        if randomly.returncode is None:
            if kill_at is None and re.search(r"epoch +\d+/", random_log.read_text()):
                kill_at = time.monotonic() + delay
            if kill_at is not None and time.monotonic() >= kill_at:
                kill(randomly, random_log)
        if targeted.returncode is None and left is None:
            left = try_kill_with_checkpoint_left(targeted.pid, targeted_log, checkpoints, runs_dir)
            if left:
                assert targeted.wait() == -signal.SIGKILL, targeted_log.read_text()
        time.sleep(0.01)
    return left


def test_jax_workers_killed_around_their_checkpoint_writes(tmp_path):
    """The same with two JAX workers over four trials (fewer: each JAX process imports and
    compiles for seconds): one killed within 2 s after its first epoch, where its orbax
    checkpoint writes are, one killed with a committed checkpoint of an unsaved run; then
    the claimed runs are finished, resumed where they were left, and equal one-at-a-time runs."""
    results, logs, runs_dir, argv = folders(tmp_path, "jax", epochs=3)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO),
               XLA_FLAGS="--xla_cpu_multi_thread_eigen=false --xla_backend_optimization_level=0",
               JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax_cache"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    rng = np.random.default_rng(20261203)
    checkpoints = CheckpointDir(DATASET, VERSION, "jax", results)  # read only
    saved: dict[str, bytes] = {}
    left_behind = []
    for trial in range(JAX_TRIALS):
        trial_logs = [logs / f"trial_{trial}_{i}.log" for i in range(JAX_WORKERS)]
        processes = [start_jax_worker(argv, log, env) for log in trial_logs]
        try:
            left_behind.append(kill_jax_workers(processes, trial_logs, rng.uniform(0.0, 2.0),
                                                checkpoints, runs_dir))
        finally:  # on a failure, no worker is left training (or stopped) forever
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.wait()
        now = run_files(runs_dir)
        for name, content in saved.items():
            assert now.get(name) == content, f"trial {trial}: {name} was changed or lost"
        results_store.load_runs(DATASET, VERSION, "jax", results, strict=True)
        saved = now
    claimed = trained_runs(list(logs.glob("trial_*.log")))
    claims = claims_dir(DATASET, VERSION, "jax", results)
    for attempt in range(6):
        if not list(claims.glob("claim_*")):
            break
        log = logs / f"single_{attempt}.log"
        assert start_jax_worker([*argv, "--runs", "1"], log, env).wait() == 0, log.read_text()
    final = results_store.load_runs(DATASET, VERSION, "jax", results, strict=True)
    log = logs / "reference.log"
    reference_dir = tmp_path / "one_at_a_time"
    assert start_jax_worker([*argv[:-1], str(reference_dir), "--runs", str(len(final))], log,
                            env).wait() == 0, log.read_text()
    reference = results_store.load_runs(DATASET, VERSION, "jax", reference_dir)

    resumed = [r for r in final if r.get("resumed")]
    print(f"\n{JAX_TRIALS} trials x {JAX_WORKERS} JAX workers killed: {len(claimed)} runs "
          f"claimed, {len(final)} runs in the end, {len(resumed)} resumed from a checkpoint")
    assert [r["run_index"] for r in final] == list(range(len(final)))
    assert [r["seed"] for r in final] == [11 + i for i in range(len(final))]
    assert claimed <= {r["run_index"] for r in final}
    assert not list(claims.glob("claim_*"))
    assert [p.name for p in checkpoints.path.iterdir()] == [".lock"]
    for run, epoch in left_behind:
        after = [entry["after_epoch"] for entry in final[run].get("resumed", [])]
        assert epoch in after, f"run {run} was left at epoch {epoch} but resumed after {after}"
    assert [numbers(r) for r in final] == [numbers(r) for r in reference]

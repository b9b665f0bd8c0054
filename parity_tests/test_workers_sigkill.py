"""Four workers on one version, each SIGKILLed at random moments, 30 times over (issue 14).

Every trial starts four torch demos (forks of :class:`helpers.demo_server.DemoServer`,
each exactly what ``demos/fashion_mnist_torch.py`` runs) on the same version,
training 2-epoch runs on 40 generated images without end, and kills each one
with SIGKILL at its own moment, drawn from a seeded generator: while it starts,
claims a run, trains, takes over a dead worker's run, writes a checkpoint or a
run file, or deletes either. The next trial's workers find the dead workers'
claims and resume those runs. After every trial

* every run file saved before is byte-for-byte unchanged and the run folder
  loads strictly (no partial or foreign file);
* no run was ever trained by two processes at the same time (each child holds
  an exclusive ``flock`` per run while training it, see ``DemoServer``).

At the end four unkilled workers, then single ones, finish every claimed run:
the runs are 0 .. n-1 with no gap, run i has seed 11 + i (no index or seed used
twice), no claim or checkpoint is left, every run that a killed worker had
claimed was completed by another (several resumed from a checkpoint), and every
run has exactly the numbers of the same seed trained one run at a time.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import numpy as np
from helpers.demo_data import make_idx_dir
from helpers.demo_runs import DATASET, VERSION, numbers
from helpers.demo_server import DemoServer

from demos import results_store
from demos.checkpoint import checkpoint_dir
from demos.claims import claims_dir

WORKERS = 4
TRIALS = 30


def run_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("run_*.json"))}


def trained_runs(logs: list[Path]) -> set[int]:
    """Every run index some worker trained an epoch of, or started to resume."""
    pattern = re.compile(r"^(?:run +(\d+) +epoch|resuming run (\d+) )", re.MULTILINE)
    return {int(a or b) for log in logs for a, b in pattern.findall(log.read_text())}


def kill_trial(server: DemoServer, argv: list[str], logs: list[Path], delays: np.ndarray) -> None:
    """Start the workers together, SIGKILL each after its delay, reap them all."""
    pids = [server.start(argv, log) for log in logs]
    started = time.monotonic()
    for delay, pid in sorted(zip(delays, pids)):
        time.sleep(max(0.0, started + delay - time.monotonic()))
        os.kill(pid, signal.SIGKILL)
    for pid, log in zip(pids, logs):
        status = server.wait(pid)
        assert status["signal"] == signal.SIGKILL, (
            f"a worker ended by itself ({status}):\n{log.read_text()}")


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


def test_four_workers_killed_at_random_moments(tmp_path):
    data = make_idx_dir(tmp_path / "data")
    results, logs = tmp_path / "results", tmp_path / "logs"
    logs.mkdir()
    runs_dir = results_store.run_dir(DATASET, VERSION, "torch", results)
    argv = [VERSION, "--epochs", "2", "--batch-size", "16", "--seed", "11", "--data-dir", str(data),
            "--no-checksum", "--no-progress", "--results-dir", str(results)]
    rng = np.random.default_rng(20261202)
    server = DemoServer(exclusive=tmp_path / "exclusive")
    saved: dict[str, bytes] = {}
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
            kill_trial(server, argv, trial_logs, rng.uniform(0.02, longest, WORKERS))
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
    assert [p.name for p in checkpoint_dir(DATASET, VERSION, "torch", results).iterdir()] == [".lock"]
    assert not list(claims_dir(DATASET, VERSION, "torch", results).glob("claim_*"))
    assert len(final) >= 2 * WORKERS, "the workers made too little progress between kills"
    assert taken_over and resumed, "no kill left a run for another worker to resume"
    assert [r["seed"] for r in reference] == [r["seed"] for r in final]
    assert [numbers(r) for r in final] == [numbers(r) for r in reference]

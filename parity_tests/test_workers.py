"""Several workers on one version (issue 14): ``--workers N``, and a worker that lost its run.

``--workers 2`` runs the real torch demo script in a subprocess on a few generated
images: the two workers share the runs out, the numbers equal those of the same
seeds trained one at a time, the combined throughput is printed, and Ctrl-C to
the parent stops both cleanly (their runs left to resume), even while it starts
them. A worker whose claim another worker took over (it was paused past its
lease) writes nothing more of that run. SIGKILLs of four workers at once:
``test_workers_sigkill.py``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
from helpers.demo_data import make_idx_dir
from helpers.demo_runs import DATASET, REPO, VERSION, demo_args, numbers

from demos import results_store, runner
from demos.checkpoint import CheckpointDir, checkpoint_dir
from demos.claims import RunClaims, claims_dir
from demos.workers import combined_status, split_runs, worker_environment


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory):
    return make_idx_dir(tmp_path_factory.mktemp("idx"))


def demo_command(*args: str) -> list[str]:
    return [sys.executable, str(REPO / "demos" / f"{DATASET}_torch.py"), *args]


def test_split_runs_environment_and_status():
    assert split_runs(None, 3) == [None, None, None]
    assert split_runs(7, 3) == [3, 2, 2]
    assert split_runs(2, 4) == [1, 1]
    env = worker_environment(1, 2, {"CUDA_VISIBLE_DEVICES": "0,1,2", "XLA_FLAGS": "--a"})
    assert env["CUDA_VISIBLE_DEVICES"] == "1"
    assert int(env["OMP_NUM_THREADS"]) == max(1, len(os.sched_getaffinity(0)) // 2)
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(REPO)
    assert worker_environment(0, 2, {"OMP_NUM_THREADS": "3"})["OMP_NUM_THREADS"] == "3"
    assert combined_status([0, 0]) == 0 and combined_status([0, -9]) == 1
    assert combined_status([1, 2, 0]) == 2


@pytest.mark.parametrize("flag, value, message", [
    ("--workers", "0", "argument --workers: expected a positive integer, got '0'"),
    ("--lease-seconds", "0.5", "argument --lease-seconds: expected at least 1 second, got '0.5'"),
])
def test_bad_worker_arguments_are_refused(flag, value, message, tmp_path):
    done = subprocess.run(demo_command(VERSION, "--results-dir", str(tmp_path / "r"), flag, value),
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert sorted(tmp_path.iterdir()) == []


def test_two_workers_share_the_runs_and_match_one_at_a_time(idx_dir, tmp_path, capsys):
    results, reference = tmp_path / "results", tmp_path / "reference"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(demo_command(*demo_args(idx_dir, results, epochs=2, runs=5),
                                       "--workers", "2"),
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "starting 2 workers of fashion_mnist torch t1" in done.stdout
    saved = re.findall(r"^\[worker (\d)\] saved run (\d+) ", done.stdout, re.MULTILINE)
    assert sorted(int(run) for _, run in saved) == [0, 1, 2, 3, 4]
    assert sorted(w for w, _ in saved) == ["0", "0", "0", "1", "1"]  # --runs 5: 3 + 2
    assert re.search(r"^\[workers\] done: 5 run\(s\) saved in \d+ s: [\d.]+ runs/hour with 2 "
                     r"workers; exit statuses \[0, 0\]$", done.stdout, re.MULTILINE), done.stdout
    assert "Traceback" not in done.stderr

    assert runner.main(DATASET, "torch", demo_args(idx_dir, reference, epochs=2, runs=5)) == 0
    capsys.readouterr()
    got = results_store.load_runs(DATASET, VERSION, "torch", results)
    expected = results_store.load_runs(DATASET, VERSION, "torch", reference)
    assert [(r["run_index"], r["seed"]) for r in got] == [(i, 3 + i) for i in range(5)]
    assert [numbers(r) for r in got] == [numbers(r) for r in expected]
    assert not list(claims_dir(DATASET, VERSION, "torch", results).glob("claim_*"))


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl_c", "sigterm"])
def test_ctrl_c_or_sigterm_to_the_parent_stops_every_worker_cleanly(stop, idx_dir, tmp_path):
    """SIGINT to the parent (a terminal's Ctrl-C reaches it alone: the workers have their
    own process group), or SIGTERM (``kill``, a batch system's time limit), is forwarded
    once; both stop, their claims released, exit 0; the next demo resumes their runs."""
    results = tmp_path / "results"
    # Runs of 1,000 epochs (about 20 s each, 40 took under a second): the stop lands inside
    # both workers' runs however late a loaded machine delivers it. With 40, one worker once
    # finished its run and stood between runs, with nothing to resume, when the stop came.
    argv = demo_args(idx_dir, results, epochs=1000)[:]
    argv[argv.index("--runs"):argv.index("--runs") + 2] = []  # no --runs: forever
    parent = subprocess.Popen(demo_command(*argv, "--workers", "2"), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=dict(os.environ, OMP_NUM_THREADS="1"))
    lines, err = [], []
    reader = threading.Thread(target=lambda: lines.extend(parent.stdout), daemon=True)
    reader.start()
    err_reader = threading.Thread(target=lambda: err.extend(parent.stderr), daemon=True)
    err_reader.start()
    deadline = time.monotonic() + 300
    past_a_checkpoint = re.compile(r"^\[worker (\d)\] run +\d+ +epoch +2/1000 ")
    while len({m[1] for line in lines if (m := past_a_checkpoint.match(line))}) < 2:
        assert parent.poll() is None and time.monotonic() < deadline, "".join(lines + err)
        time.sleep(0.2)
    parent.send_signal(stop)
    assert parent.wait(timeout=120) == 0, "".join(lines + err)
    reader.join(timeout=30)
    err_reader.join(timeout=30)
    assert not (reader.is_alive() or err_reader.is_alive()), "the demo's output did not end"
    stops = [line for line in err if "stopped;" in line]
    assert len(stops) == 2 and all("resumes after epoch" in line for line in stops), err
    assert "Traceback" not in "".join(err)
    claims = list(claims_dir(DATASET, VERSION, "torch", results).glob("claim_*"))
    assert len(claims) == 2 and all('"released": true' in c.read_text() for c in claims)
    folder = CheckpointDir(DATASET, VERSION, "torch", results)
    assert sorted(folder.runs_in_progress()) == [0, 1]


# The parent, with its first worker started and its second not yet: SIGTERM comes then.
# Like the real parent (numpy's BLAS threads), it has a second thread: a process-directed
# signal may then be taken by a thread other than the one starting the workers.
STOP_WHILE_STARTING = """
import argparse, os, signal, sys, threading
import demos.runner
from demos import workers
threading.Thread(target=threading.Event().wait, daemon=True).start()
start = workers._start_worker
def start_then_stop(*args):
    process = start(*args)
    if args[3] == 0:  # the worker's index
        os.kill(os.getpid(), signal.SIGTERM)
    return process
workers._start_worker = start_then_stop
argv = sys.argv[1:]
sys.exit(workers.launch({dataset!r}, "torch", argv,
                        argparse.Namespace(runs=None, workers=2, version=argv[0])))
"""


def test_a_stop_while_the_workers_start_reaches_every_worker(idx_dir, tmp_path):
    """SIGTERM to the parent after it started its first worker and before its second (its
    forwarding did not exist yet there once, and the default action killed the parent): the
    parent lives, both workers (which would train forever) get the stop, and it reports them."""
    argv = demo_args(idx_dir, tmp_path / "results", epochs=1000)[:]
    argv[argv.index("--runs"):argv.index("--runs") + 2] = []  # no --runs: forever
    done = subprocess.run([sys.executable, "-c", STOP_WHILE_STARTING.format(dataset=DATASET),
                           *argv], capture_output=True, text=True, timeout=120, cwd=REPO,
                          env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO)))
    assert done.returncode in (0, 1), (done.returncode, done.stdout, done.stderr)
    codes = re.search(r"^\[workers\] done: .*; exit statuses \[(.*)\]$", done.stdout,
                      re.MULTILINE)
    assert codes, done.stdout + done.stderr
    codes = [int(code) for code in codes[1].split(",")]
    # Each worker stopped cleanly (0), or died of the SIGTERM before its own handling began.
    assert len(codes) == 2 and set(codes) <= {0, -signal.SIGTERM}, done.stdout + done.stderr
    assert done.returncode == combined_status(codes)


# A parent started with SIGINT ignored (``cmd &`` in a script, ``nohup``): its workers,
# here each a Python that prints how it finds the two stop signals, started as launch does.
DISPOSITIONS = """
import argparse, signal, subprocess, sys
from demos import workers
signal.signal(signal.SIGINT, signal.SIG_IGN)
SHOW = ("import signal; print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN, "
        "signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)")
def start(dataset, framework, argv, index, count, runs, libc, ignored):
    return subprocess.Popen([sys.executable, "-c", SHOW], text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            preexec_fn=lambda: workers._child_setup(libc, ignored))
workers._start_worker = start
sys.exit(workers.launch("fashion_mnist", "torch", ["v"],
                        argparse.Namespace(runs=None, workers=2, version="v")))
"""


def test_workers_keep_the_stop_signals_the_parent_ignored():
    """A stop signal the parent was started ignoring stays ignored in its workers (as a
    single demo keeps it); the other one has its default action there, not the parent's
    forwarding."""
    done = subprocess.run([sys.executable, "-c", DISPOSITIONS], capture_output=True, text=True,
                          timeout=120, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert done.returncode == 0, done.stdout + done.stderr
    shown = sorted(line for line in done.stdout.splitlines() if re.match(r"\[worker \d\] ", line))
    assert shown == ["[worker 0] True True", "[worker 1] True True"], done.stdout + done.stderr


def test_a_worker_whose_run_was_taken_over_writes_nothing_more_of_it(
        idx_dir, tmp_path, monkeypatch, capsys):
    """After run 0's epoch-1 checkpoint another worker takes run 0 over, as if this one had
    been paused past twice its lease: this one writes no epoch-2 checkpoint and no result of
    run 0, warns, and goes on with run 1."""
    results = tmp_path / "results"
    taker = RunClaims(DATASET, VERSION, "torch", results)
    taken = []
    save = CheckpointDir.save

    def save_then_lose(directory, trainer, record, step):
        path = save(directory, trainer, record, step)
        if (record["run_index"], len(record["epochs"])) == (0, 1):
            real_time = time.time
            with monkeypatch.context() as later:  # the taker looks 1000 s later
                later.setattr(time, "time", lambda: real_time() + 1000)
                taken.extend(taker.claim_runs(1, first_free=lambda: 0))
        return path

    monkeypatch.setattr(CheckpointDir, "save", save_then_lose)
    try:
        assert runner.main(DATASET, "torch", demo_args(idx_dir, results)) == 0
    finally:
        taker.close()
    assert [(c.run_index, c.generation, c.took_over["why"]) for c in taken] == [(0, 2, "expired")]
    err = capsys.readouterr().err
    assert ("warning: run 0: another worker took it over (claim generation 2 after this "
            "worker's 1: this worker's lease expired; was it paused?); this worker stops "
            "writing it.") in err
    assert [r["run_index"] for r in results_store.load_runs(DATASET, VERSION, "torch",
                                                            results)] == [1]
    assert sorted(p.name for p in checkpoint_dir(DATASET, VERSION, "torch", results).iterdir()) \
        == [".lock", "run_0000_epoch_0001"]

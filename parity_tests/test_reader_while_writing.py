"""show_results read in a loop while a demo writes runs: it never crashes and never
sees a half-written run (issue: results must be readable from another console)."""

import subprocess
import sys

from helpers.demo_data import make_idx_dir
from helpers.demo_runs import DATASET, REPO, VERSION, demo_args

from demos import results_store, show_results

EPOCHS, RUNS = 2, 4


def test_reader_loop_while_a_demo_writes(tmp_path, capsys):
    data_dir = make_idx_dir(tmp_path / "idx")
    results = tmp_path / "results"
    demo = subprocess.Popen(
        [sys.executable, str(REPO / "demos" / f"{DATASET}_torch.py"),
         *demo_args(data_dir, results, epochs=EPOCHS, runs=RUNS)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    reads, seen = 0, set()
    try:
        while True:
            finished = demo.poll() is not None
            # Strict loading raises on any partial or foreign file: none may ever be visible.
            runs = results_store.load_runs(DATASET, VERSION, "torch", results)
            for run in runs:
                assert len(run["epochs"]) == EPOCHS, f"run {run['run_index']} is incomplete"
                seen.add(run["run_index"])
            status = show_results.main([VERSION, "--results-dir", str(results), "--no-plots"])
            # Runs only ever appear: once one was loaded the viewer must find it too.
            assert status == 0 if runs else status in (0, 1)
            reads += 1
            if finished:
                break
    finally:
        if demo.poll() is None:
            demo.kill()
        demo.wait(timeout=60)
    capsys.readouterr()
    assert demo.returncode == 0, demo.stderr.read()
    assert seen == set(range(RUNS))
    assert reads >= 2

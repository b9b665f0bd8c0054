"""show_results and compare_frameworks read in a loop while demos write runs: they never
crash and never see a half-written run (issue: results must be readable from another
console), with one demo or with several workers writing the same version (issue 14:
runs then appear in any order, e.g. run 3 before run 2)."""

import os
import subprocess
import sys

import pytest
from helpers.demo_data import make_idx_dir
from helpers.demo_runs import DATASET, REPO, VERSION, demo_args

from demos import compare_frameworks, results_store, show_results

EPOCHS, RUNS = 2, 4


def jax_twins(results, tmp_path) -> None:
    """Two runs in the JAX folder with the torch runs' settings (torch records relabelled:
    compare_frameworks needs two runs of each framework with the same settings)."""
    scratch = tmp_path / "scratch"
    done = subprocess.run([sys.executable, str(REPO / "demos" / f"{DATASET}_torch.py"),
                           *demo_args(tmp_path / "idx", scratch, epochs=EPOCHS, runs=2)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for record in results_store.load_runs(DATASET, VERSION, "torch", scratch):
        record["framework"] = "jax"
        record["settings"]["init_from"] = "jax"
        results_store.save_run(record, results)


@pytest.mark.parametrize("workers", [1, 3])
def test_reader_loop_while_demos_write(workers, tmp_path, capsys):
    data_dir = make_idx_dir(tmp_path / "idx")
    results = tmp_path / "results"
    if workers > 1:
        jax_twins(results, tmp_path)
    demo = subprocess.Popen(
        [sys.executable, str(REPO / "demos" / f"{DATASET}_torch.py"),
         *demo_args(data_dir, results, epochs=EPOCHS, runs=RUNS), "--workers", str(workers)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    reads, seen, compared = 0, set(), 0
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
            if workers > 1:
                status = compare_frameworks.main([VERSION, "--results-dir", str(results),
                                                  "--no-write"])
                # Fewer than two torch runs: status 2 ("need at least 2 runs"), until
                # more appear (maybe between the two reads).
                assert status in ((0, 1) if len(runs) >= 2 else (0, 1, 2))
                compared += status in (0, 1)
            reads += 1
            if finished:
                break
    finally:
        if demo.poll() is None:
            demo.kill()
        demo.wait(timeout=60)
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    # A checkpoint replaced or removed while the viewer read it is not "unreadable".
    assert "unreadable" not in out.out
    assert demo.returncode == 0, demo.stderr.read()
    assert seen == set(range(RUNS))
    assert reads >= 2
    if workers > 1:
        assert compared >= 1

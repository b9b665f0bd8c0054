"""demos/compare_frameworks.py on generated run records (no training, no data)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from demos import compare_frameworks as cf
from demos import results_store as rs
from demos.recipe import COMPARISON
from demos.records import SCHEMA_VERSION

REPO = Path(__file__).resolve().parent.parent
VERSION = "vtest"
SETTINGS = {"epochs": COMPARISON.epochs, "batch_size": COMPARISON.batch_size,
            "max_lr": COMPARISON.max_lr, "optimizer": "adam",
            "schedule": "one-cycle (torch OneCycleLR defaults)", "pct_start": 0.3,
            "steps_per_epoch": 59, "train_examples": 60000, "test_examples": 10000,
            "dtype": "float32", "data_source": "generated for the test"}


def make_record(framework: str, run_index: int, final_error: float, **settings) -> dict:
    epochs = []
    for e in range(1, SETTINGS["epochs"] + 1):
        error = final_error + 2.0 * (SETTINGS["epochs"] - e)
        epochs.append({"epoch": e, "train_loss": 0.5, "train_accuracy": 0.8, "test_loss": 0.4,
                       "test_accuracy": 1 - error / 100, "test_error": error,
                       "learning_rate": 1e-3, "seconds": 1.0})
    return {"schema": SCHEMA_VERSION, "dataset": "fashion_mnist", "version": VERSION,
            "framework": framework, "run_index": run_index, "seed": run_index,
            "settings": {**SETTINGS, **settings}, "epochs": epochs,
            "packages": {"numpy": "2.4.0"}}


def save(tmp_path, framework, errors, start=0, **settings):
    for i, error in enumerate(errors, start):
        rs.save_run(make_record(framework, i, error, **settings), tmp_path)


def report_path(tmp_path) -> Path:
    return tmp_path / "fashion_mnist" / VERSION / "comparison.txt"


TORCH = [8.91, 9.12, 8.75, 9.30, 9.02]
JAX = [9.05, 8.80, 9.21, 8.97, 9.15, 8.88]


def test_statistics_match_scipy_and_the_report_is_written(tmp_path, capsys):
    save(tmp_path, "torch", TORCH)
    save(tmp_path, "jax", JAX)
    status = cf.main([VERSION, "--results-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert status == 0

    se_t = np.std(TORCH, ddof=1) / math.sqrt(len(TORCH))
    se_j = np.std(JAX, ddof=1) / math.sqrt(len(JAX))
    welch = sps.ttest_ind(TORCH, JAX, equal_var=False)
    result = cf.compare(rs.load_runs("fashion_mnist", VERSION, None, tmp_path))
    assert result["stats"]["torch"]["mean"] == pytest.approx(np.mean(TORCH), rel=1e-12)
    assert result["stats"]["jax"]["mean"] == pytest.approx(np.mean(JAX), rel=1e-12)
    assert result["stats"]["torch"]["stderr"] == pytest.approx(se_t, rel=1e-12)
    assert result["stats"]["jax"]["stderr"] == pytest.approx(se_j, rel=1e-12)
    assert result["difference"] == pytest.approx(np.mean(TORCH) - np.mean(JAX), rel=1e-12)
    assert result["combined_stderr"] == pytest.approx(math.hypot(se_t, se_j), rel=1e-12)
    assert result["welch_t"] == pytest.approx(welch.statistic, rel=1e-12)
    assert result["welch_p"] == pytest.approx(welch.pvalue, rel=1e-12)
    assert result["within_two_se"] is True
    assert result["stats"]["jax"]["seeds"] == list(range(len(JAX)))

    text = report_path(tmp_path).read_text()
    assert text in out  # the printed report is the written one
    assert f"torch: {np.mean(TORCH):.3f} ± {se_t:.3f} %" in text
    assert f"jax: {np.mean(JAX):.3f} ± {se_j:.3f} %" in text
    assert f"p = {welch.pvalue:.4g}" in text
    assert "the means agree within two standard errors" in text
    assert "reference settings" in text and ": yes" in text
    assert "run 4 (seed 4): 9.02" in text
    # Atomic write: no temp file left behind; besides the report only its plot is added.
    assert sorted(p.name for p in report_path(tmp_path).parent.iterdir()) == [
        "comparison.txt", "error_distributions.png", "jax", "torch"]
    # The equivalence statistics, against scipy.
    interval = sps.ttest_ind(TORCH, JAX, equal_var=False).confidence_interval(0.9)
    assert (result["interval"].low, result["interval"].high) == pytest.approx((interval.low, interval.high))
    lower = sps.ttest_ind(np.add(TORCH, 0.25), JAX, equal_var=False, alternative="greater").pvalue
    upper = sps.ttest_ind(np.subtract(TORCH, 0.25), JAX, equal_var=False, alternative="less").pvalue
    assert result["equivalence_p"] == pytest.approx(max(lower, upper), rel=1e-12)
    assert f"[{interval.low:+.3f}, {interval.high:+.3f}]" in text


def test_means_apart_fail_the_two_se_check(tmp_path, capsys):
    save(tmp_path, "torch", TORCH)
    save(tmp_path, "jax", [e + 1.0 for e in JAX])
    assert cf.main([VERSION, "--results-dir", str(tmp_path)]) == 1
    text = report_path(tmp_path).read_text()
    assert "check FAILED" in text and "find why" in text
    welch = sps.ttest_ind(TORCH, [e + 1.0 for e in JAX], equal_var=False)
    assert welch.pvalue < 0.01 and f"p = {welch.pvalue:.4g}" in text


def test_rewrite_replaces_the_report(tmp_path, capsys):
    save(tmp_path, "torch", TORCH)
    save(tmp_path, "jax", JAX)
    report_path(tmp_path).parent.mkdir(parents=True, exist_ok=True)
    report_path(tmp_path).write_text("stale\n")
    assert cf.main([VERSION, "--results-dir", str(tmp_path)]) == 0
    assert "stale" not in report_path(tmp_path).read_text()
    # --no-write leaves it alone.
    report_path(tmp_path).write_text("kept\n")
    assert cf.main([VERSION, "--results-dir", str(tmp_path), "--no-write"]) == 0
    assert report_path(tmp_path).read_text() == "kept\n"


def test_too_few_runs_is_an_error_naming_train(tmp_path, capsys):
    save(tmp_path, "torch", TORCH)
    save(tmp_path, "jax", JAX[:1])
    assert cf.main([VERSION, "--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "jax: 1" in err and "--train" in err
    assert not report_path(tmp_path).exists()


def test_runs_with_different_settings_are_refused(tmp_path, capsys):
    save(tmp_path, "torch", TORCH)
    save(tmp_path, "jax", JAX[:3])
    save(tmp_path, "jax", JAX[3:], start=3, epochs=10)
    assert cf.main([VERSION, "--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "do not share their settings" in err
    assert "jax/run_0003 jax/run_0004 jax/run_0005" in err and "epochs=10" in err
    assert not report_path(tmp_path).exists()


def test_augmented_runs_are_not_compared_with_plain_ones(tmp_path, capsys):
    """Records from before the augmentation flags (no keys) count as unaugmented."""
    save(tmp_path, "torch", TORCH)  # no augmentation keys at all (like results/…/v1)
    save(tmp_path, "jax", JAX[:3], random_crop_padding=0, hflip=False)
    assert cf.main([VERSION, "--results-dir", str(tmp_path)]) == 0
    capsys.readouterr()
    save(tmp_path, "jax", JAX[3:], start=3, random_crop_padding=4, hflip=True)
    assert cf.main([VERSION, "--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "do not share their settings" in err and "random_crop_padding=4" in err and "hflip=True" in err


def test_non_reference_settings_are_flagged(tmp_path, capsys):
    save(tmp_path, "torch", TORCH[:3], batch_size=256)
    save(tmp_path, "jax", JAX[:3], batch_size=256)
    assert cf.main([VERSION, "--results-dir", str(tmp_path)]) == 0
    assert "max_lr 0.01): NO" in report_path(tmp_path).read_text()


def test_train_adds_only_the_missing_runs_through_the_demo_entry_point(tmp_path, capsys):
    save(tmp_path, "torch", TORCH[:3])
    save(tmp_path, "jax", JAX[:4])
    calls = []

    def fake_demo(dataset, framework, argv):
        # Stands in for demos.runner.main: parses the same command line and appends runs.
        from demos.runner import parse_args
        args = parse_args(dataset, framework, argv)
        calls.append((framework, argv))
        assert args.version == VERSION and args.epochs == 5 and args.batch_size == 1024
        assert args.max_lr == 0.01 and Path(args.results_dir) == tmp_path
        start = rs.next_run_index(dataset, VERSION, framework, tmp_path)
        save(tmp_path, framework, [9.0 + 0.1 * i for i in range(args.runs)], start=start)
        return 0

    status = cf.main([VERSION, "--train", "5", "--results-dir", str(tmp_path), "--no-progress"],
                     train_demo=fake_demo)
    assert status == 0
    assert [(fw, argv[argv.index("--runs") + 1]) for fw, argv in calls] == [("torch", "2"), ("jax", "1")]
    assert all("--no-progress" in argv for _, argv in calls)
    stats = cf.compare(rs.load_runs("fashion_mnist", VERSION, None, tmp_path))["stats"]
    assert stats["torch"]["n"] == 5 and stats["jax"]["n"] == 5
    # Enough runs already: nothing trained.
    calls.clear()
    assert cf.main([VERSION, "--train", "5", "--results-dir", str(tmp_path)], train_demo=fake_demo) == 0
    assert calls == []


def test_failed_training_is_reported(tmp_path, capsys):
    save(tmp_path, "torch", TORCH[:1])
    status = cf.main([VERSION, "--train", "3", "--results-dir", str(tmp_path)],
                     train_demo=lambda dataset, framework, argv: 1)
    assert status == 2
    assert "training torch runs failed (demo exit status 1)" in capsys.readouterr().err


def test_script_help_and_bad_version():
    env = {**os.environ, "PYTHONPATH": ""}
    help_run = subprocess.run([sys.executable, str(REPO / "demos" / "compare_frameworks.py"), "--help"],
                              capture_output=True, text=True, cwd="/", env=env, timeout=120)
    assert help_run.returncode == 0, help_run.stderr
    assert "--train" in help_run.stdout and "comparison.txt" in help_run.stdout
    with pytest.raises(SystemExit) as info:
        cf.parse_args(["bad/version"])
    assert info.value.code == 2

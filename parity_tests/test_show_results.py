"""Tests of the results viewer (demos/show_results.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.demo_runs import REPO as REPO_ROOT
from helpers.demo_runs import make_record, snapshot

from demos import results_store as rs
from demos import show_results

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TORCH_FINALS = [8.0, 9.0, 10.0]   # mean 9, std 1, stderr 1/sqrt(3) = 0.577
JAX_FINALS = [9.5, 10.5]          # mean 10, std sqrt(0.5) = 0.707, stderr 0.5


@pytest.fixture
def results(tmp_path):
    root = tmp_path / "results"
    for i, e in enumerate(TORCH_FINALS):
        rs.save_run(make_record("torch", i, e, n_epochs=5), root)
    for i, e in enumerate(JAX_FINALS):
        rs.save_run(make_record("jax", i, e, n_epochs=5), root)
    return root


def row(stdout: str, framework: str) -> list[str]:
    (line,) = [l for l in stdout.splitlines() if l.split()[:1] == [framework]]
    return line.split()


def check_png(path: Path):
    assert path.is_file()
    assert path.read_bytes()[:8] == PNG_MAGIC
    import matplotlib.image
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100


def test_stats_and_plots(results, tmp_path, capsys):
    plots = tmp_path / "plots"
    before = snapshot(results)
    assert show_results.main(["v1", "--results-dir", str(results),
                              "--plot-dir", str(plots)]) == 0
    out = capsys.readouterr().out
    # framework, runs, epochs, mean, std, stderr, min, max
    assert row(out, "torch") == ["torch", "3", "5", "9.000", "1.000", "0.577",
                                 "8.000", "10.000"]
    assert row(out, "jax") == ["jax", "2", "5", "10.000", "0.707", "0.500",
                               "9.500", "10.500"]
    assert "difference of means (torch - jax): -1.000" in out
    # Welch by hand: t = (9 - 10) / sqrt(1/3 + 0.5/2);
    # df = (1/3 + 1/4)^2 / ((1/3)^2 / 2 + (1/4)^2 / 1).
    from scipy import stats
    se2 = 1 / 3 + 0.5 / 2
    t = -1 / se2 ** 0.5
    df = se2 ** 2 / ((1 / 3) ** 2 / 2 + 0.25 ** 2 / 1)
    p = 2 * stats.t.sf(abs(t), df)
    assert f"t = {t:.3f}" in out
    assert f"p = {p:.4g}" in out
    check_png(plots / "results_v1.png")
    check_png(plots / "results_detail_v1.png")
    assert sorted(p.name for p in plots.iterdir()) == \
        ["results_detail_v1.png", "results_v1.png"]  # no temp files left
    assert snapshot(results) == before  # read-only


def test_single_framework_and_single_run(tmp_path, capsys):
    root = tmp_path / "results"
    rs.save_run(make_record("jax", 0, 7.25, dataset="cifar10", version="v_37"), root)
    assert show_results.main(["v_37", "--results-dir", str(root), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert row(out, "jax") == ["jax", "1", "3", "7.250", "n/a", "n/a", "7.250", "7.250"]
    assert "cifar10 / v_37" in out
    assert "Welch" not in out and "difference" not in out
    assert not (tmp_path / "plots").exists()


def test_too_few_runs_for_welch(tmp_path, capsys):
    root = tmp_path / "results"
    rs.save_run(make_record("torch", 0, 8.0), root)
    rs.save_run(make_record("torch", 1, 9.0), root)
    rs.save_run(make_record("jax", 0, 8.0), root)
    assert show_results.main(["v1", "--results-dir", str(root), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "difference of means (torch - jax): +0.500" in out
    assert "needs >= 2 runs per framework (torch: 2, jax: 1)" in out


def test_several_versions_overlaid(results, tmp_path, capsys):
    rs.save_run(make_record("torch", 0, 6.0, version="v2", n_epochs=8), results)
    rs.save_run(make_record("jax", 0, 6.5, version="v2", n_epochs=8,
                            dataset="cifar10"), results)
    plots = tmp_path / "plots"
    assert show_results.main(["v1", "v2", "--results-dir", str(results),
                              "--plot-dir", str(plots)]) == 0
    out = capsys.readouterr().out
    assert "fashion_mnist / v1" in out and "fashion_mnist / v2" in out
    assert "cifar10 / v2" in out
    check_png(plots / "results_v1_v2.png")
    check_png(plots / "results_detail_v1_v2.png")

    # --dataset filters.
    assert show_results.main(["v2", "--dataset", "cifar10", "--results-dir",
                              str(results), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "cifar10 / v2" in out and "fashion_mnist" not in out


def test_empty_version_exits_1(results, tmp_path, capsys):
    plots = tmp_path / "plots"
    assert show_results.main(["v9", "--results-dir", str(results),
                              "--plot-dir", str(plots)]) == 1
    err = capsys.readouterr().err
    assert "No runs found" in err and "'v9'" in err and str(results) in err
    assert "v1" in err  # lists what is there
    assert not plots.exists()
    # An empty / missing results folder too.
    assert show_results.main(["v1", "--results-dir", str(tmp_path / "nothing"),
                              "--no-plots"]) == 1
    assert str(tmp_path / "nothing") in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["../x", "/tmp/x", "a b"])
def test_bad_version_exits_2(bad, capsys):
    with pytest.raises(SystemExit) as info:
        show_results.main([bad, "--no-plots"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "version" in err and repr(bad) in err


def test_skips_corrupt_and_in_progress_files(results, tmp_path, capsys):
    d = rs.run_dir("fashion_mnist", "v1", "torch", results)
    (d / "run_0003.json").write_text('{"schema": 1, "dataset"')     # corrupt
    (d / ".run_0004.json.77.abcdef12.tmp").write_text('{"sch')       # being written
    assert show_results.main(["v1", "--results-dir", str(results), "--no-plots"]) == 0
    captured = capsys.readouterr()
    assert row(captured.out, "torch")[:2] == ["torch", "3"]
    assert str(d / "run_0003.json") in captured.err
    assert "run_0004" not in captured.err
    assert (d / "run_0003.json").read_text() == '{"schema": 1, "dataset"'


def _env():
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env["MPLBACKEND"] = "Agg"
    return env


def test_runs_as_script_from_elsewhere(results, tmp_path):
    script = REPO_ROOT / "demos" / "show_results.py"
    out = subprocess.run([sys.executable, str(script), "v1", "--results-dir",
                          str(results), "--no-plots"], cwd=tmp_path, env=_env(),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert row(out.stdout, "torch")[3] == "9.000"
    bad = subprocess.run([sys.executable, str(script), "../x"], cwd=tmp_path,
                         env=_env(), capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "version" in bad.stderr
    empty = subprocess.run([sys.executable, str(script), "v5", "--results-dir",
                            str(results)], cwd=tmp_path, env=_env(),
                           capture_output=True, text=True, timeout=120)
    assert empty.returncode == 1 and "No runs found" in empty.stderr
    helped = subprocess.run([sys.executable, str(script), "--help"], cwd=tmp_path,
                            env=_env(), capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0 and "--plot-dir" in helped.stdout


def test_runs_as_module(results):
    out = subprocess.run([sys.executable, "-m", "demos.show_results", "v1",
                          "--results-dir", str(results), "--no-plots"],
                         cwd=REPO_ROOT, env=_env(), capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert row(out.stdout, "jax")[3] == "10.000"


def _fake_checkpoint(results: Path, run_index: int, record: dict, *, state: bool = True) -> Path:
    """A torch checkpoint folder as :class:`demos.checkpoint.CheckpointDir` writes it
    (the state file's bytes are not read by the viewer)."""
    import json

    from demos.checkpoint import FORMAT, checkpoint_dir
    epoch = len(record["epochs"])
    folder = checkpoint_dir("fashion_mnist", "v1", "torch", results) / f"run_{run_index:04d}_epoch_{epoch:04d}"
    folder.mkdir(parents=True)
    meta = {"format": FORMAT, "framework": "torch", "run_index": run_index, "epoch": epoch,
            "global_step": 10 * epoch, "record": record}
    (folder / "meta.json").write_text(json.dumps(meta))
    if state:
        (folder / "state.pt").write_bytes(b"not read")
    return folder


def test_lists_runs_in_progress_outside_the_statistics(results, capsys):
    record = make_record("torch", 3, 12.5, n_epochs=4, settings={"arch": "gallery_2764"})
    record["settings"]["epochs"] = 200
    _fake_checkpoint(results, 3, record)
    before = snapshot(results)
    assert show_results.main(["v1", "--results-dir", str(results), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert ("in progress: fashion_mnist / v1 / torch run 3: epoch 4/200, test error 12.500 % "
            "(--arch gallery_2764; not in the statistics)") in out.splitlines()
    assert row(out, "torch")[:2] == ["torch", "3"]  # the three finished runs only
    assert snapshot(results) == before


def test_only_runs_in_progress_exits_1_and_lists_them(tmp_path, capsys):
    _fake_checkpoint(tmp_path / "results", 0, make_record("torch", 0, 30.0, n_epochs=2))
    assert show_results.main(["v1", "--results-dir", str(tmp_path / "results"), "--no-plots"]) == 1
    captured = capsys.readouterr()
    assert "in progress: fashion_mnist / v1 / torch run 0: epoch 2/2, test error 30.000 %" in captured.out
    assert "No runs found for version 'v1'" in captured.err


def test_a_damaged_checkpoint_is_named_not_fatal(results, capsys):
    folder = _fake_checkpoint(results, 5, make_record("torch", 5, 20.0, n_epochs=2), state=False)
    assert show_results.main(["v1", "--results-dir", str(results), "--no-plots"]) == 0
    out = capsys.readouterr().out
    (line,) = [l for l in out.splitlines() if l.startswith("in progress:")]
    assert "unreadable checkpoint" in line and str(folder) in line and "no state.pt" in line
    assert row(out, "torch")[:2] == ["torch", "3"]


@pytest.mark.parametrize("writer_then", ["saved the next epoch", "finished the run"])
def test_a_checkpoint_removed_while_being_read_is_not_an_error(writer_then, results, monkeypatch,
                                                               capsys):
    """A demo in another console replaces or removes a run's checkpoint (renaming it away
    whole) between the viewer's listing and its read: the viewer shows what is there now,
    never "damaged" and never a crash (CI once caught the run finishing in between)."""
    import shutil

    from demos.checkpoint import CheckpointDir
    old = _fake_checkpoint(results, 3, make_record("torch", 3, 12.5, n_epochs=4))
    read = CheckpointDir._read

    def writer_acts_first(self, path, run_index, epoch):
        if path == old and old.exists():
            if writer_then == "saved the next epoch":
                _fake_checkpoint(results, 3, make_record("torch", 3, 11.0, n_epochs=5))
            shutil.rmtree(old)
        return read(self, path, run_index, epoch)

    monkeypatch.setattr(CheckpointDir, "_read", writer_acts_first)
    assert show_results.main(["v1", "--results-dir", str(results), "--no-plots"]) == 0
    out = capsys.readouterr().out
    lines = [l for l in out.splitlines() if l.startswith("in progress:")]
    if writer_then == "saved the next epoch":
        (line,) = lines
        assert "run 3: epoch 5/" in line and "test error 11.000 %" in line
    else:
        assert lines == []
    assert "unreadable" not in out


def test_a_damaged_checkpoint_still_listed_ends_the_look_again(results, monkeypatch, capsys):
    """A listing that keeps showing a checkpoint which reads as gone (a stale network
    listing), or one that cannot be looked at (permissions), gives the error once: the
    viewer never spins on it."""
    from demos import checkpoint
    folder = _fake_checkpoint(results, 5, make_record("torch", 5, 20.0, n_epochs=2), state=False)
    looks = []

    def stale(path):
        looks.append(path)
        assert len(looks) < 10, "latest() keeps looking again"
        return True

    monkeypatch.setattr(checkpoint, "_vanished", stale)
    assert show_results.main(["v1", "--results-dir", str(results), "--no-plots"]) == 0
    (line,) = [l for l in capsys.readouterr().out.splitlines() if l.startswith("in progress:")]
    assert "unreadable checkpoint" in line and "no state.pt" in line
    assert looks == [folder]
    monkeypatch.undo()

    def denied(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(checkpoint.os, "lstat", denied)
    assert checkpoint._vanished(folder) is False  # only "not found" means gone

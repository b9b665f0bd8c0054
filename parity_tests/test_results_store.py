"""Tests of the crash-safe results store (demos/results_store.py)."""

from __future__ import annotations

import copy
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.demo_runs import make_record, snapshot
from hypothesis import given, strategies as st

from demos import results_store as rs
from demos.stats import summarize

REPO_ROOT = Path(rs.__file__).resolve().parent.parent


def stats_of(root: Path) -> dict[Path, tuple]:
    return {p: (p.stat().st_mtime_ns, p.stat().st_size, p.stat().st_ino)
            for p in sorted(root.rglob("*"))}


# --------------------------------------------------------------------------
# Names and paths
# --------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["../x", "/tmp/x", "", "a b", "v1/", ".",
                                 "..", "v1\n", "v-1", "ü", "x" * 65])
def test_validate_version_rejects(bad):
    with pytest.raises(ValueError) as info:
        rs.validate_version(bad)
    msg = str(info.value)
    assert "version" in msg                       # names the argument
    assert "letter" in msg and "underscore" in msg  # says what is allowed
    assert repr(bad) in msg                       # shows what was received


@pytest.mark.parametrize("good", ["v1", "v_37", "V", "_", "x" * 64, "2024_01"])
def test_validate_version_accepts(good):
    assert rs.validate_version(good) == good


def test_validate_version_type():
    with pytest.raises(TypeError):
        rs.validate_version(1)


@given(st.text(max_size=70))
def test_validate_version_property(text):
    ok = re.fullmatch(r"[A-Za-z0-9_]{1,64}", text) is not None
    if ok:
        assert rs.validate_version(text) == text
    else:
        with pytest.raises(ValueError):
            rs.validate_version(text)


def test_run_dir_and_validation(tmp_path):
    assert rs.run_dir("cifar10", "v2", "jax", tmp_path) == tmp_path / "cifar10" / "v2" / "jax"
    assert rs.run_dir("fashion_mnist", "v1", "torch") == \
        rs.RESULTS_DIR / "fashion_mnist" / "v1" / "torch"
    assert rs.RESULTS_DIR == REPO_ROOT / "results"
    with pytest.raises(ValueError, match="dataset"):
        rs.run_dir("mnist", "v1", "torch", tmp_path)
    with pytest.raises(ValueError, match="framework"):
        rs.run_dir("cifar10", "v1", "tensorflow", tmp_path)
    with pytest.raises(ValueError, match="version"):
        rs.run_dir("cifar10", "../v1", "torch", tmp_path)


def test_no_heavy_imports():
    code = ("import sys; import demos.results_store, demos.show_results; "
            "bad = [m for m in ('torch', 'jax', 'tensorflow', 'matplotlib', "
            "'scipy') if m in sys.modules]; print(bad); sys.exit(bool(bad))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


# --------------------------------------------------------------------------
# Save / load
# --------------------------------------------------------------------------

def test_round_trip(tmp_path):
    records = [make_record("torch", 0, 9.0), make_record("torch", 1, 8.0),
               make_record("jax", 0, 8.5),
               make_record("torch", 0, 20.0, dataset="cifar10")]
    originals = copy.deepcopy(records)
    paths = [rs.save_run(r, tmp_path) for r in records]
    assert records == originals  # caller's dicts untouched
    assert paths[0] == tmp_path / "fashion_mnist" / "v1" / "torch" / "run_0000.json"
    assert paths[1].name == "run_0001.json"
    assert paths[3] == tmp_path / "cifar10" / "v1" / "torch" / "run_0000.json"
    assert json.loads(paths[0].read_text()) == records[0]

    loaded = rs.load_runs(version="v1", results_dir=tmp_path)
    key = lambda r: (r["dataset"], r["framework"], r["run_index"])
    assert loaded == sorted(records, key=key)
    assert rs.load_runs("fashion_mnist", "v1", "torch", tmp_path) == records[:2]
    assert rs.load_runs("fashion_mnist", "v1", results_dir=tmp_path) == \
        [records[2], records[0], records[1]]
    assert rs.load_runs(version="v2", results_dir=tmp_path) == []
    assert rs.load_runs(version="v1", results_dir=tmp_path / "missing") == []
    assert rs.list_versions(results_dir=tmp_path) == ["v1"]
    # No temp files left behind.
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")]


def test_load_runs_needs_valid_version(tmp_path):
    with pytest.raises(TypeError):
        rs.load_runs(results_dir=tmp_path)
    with pytest.raises(ValueError):
        rs.load_runs(version="../v1", results_dir=tmp_path)


def test_save_converts_numpy_and_keeps_nan(tmp_path):
    np = pytest.importorskip("numpy")
    rec = make_record()
    rec["epochs"][-1]["test_error"] = np.float32(12.5)
    rec["epochs"][0]["train_loss"] = float("nan")
    rec["seed"] = np.int64(3)
    rec["settings"]["shape"] = np.arange(3)
    rs.save_run(rec, tmp_path)
    (back,) = rs.load_runs(version="v1", results_dir=tmp_path)
    assert back["epochs"][-1]["test_error"] == 12.5
    assert math.isnan(back["epochs"][0]["train_loss"])
    assert back["seed"] == 3 and back["settings"]["shape"] == [0, 1, 2]


def test_no_overwrite(tmp_path):
    first = rs.save_run(make_record("torch", 0, 9.0), tmp_path)
    before = first.read_bytes()
    with pytest.raises(rs.ResultsError) as info:
        rs.save_run(make_record("torch", 0, 1.0), tmp_path)
    assert str(first) in str(info.value)
    assert first.read_bytes() == before
    assert sorted(p.name for p in first.parent.iterdir()) == ["run_0000.json"]


def test_no_overwrite_race_with_link(tmp_path, monkeypatch):
    """The final check is the hard link itself, not the early exists()."""
    rec = make_record("torch", 0, 9.0)
    target = rs.run_dir("fashion_mnist", "v1", "torch", tmp_path) / "run_0000.json"
    real_link = os.link

    def link_after_competitor(src, dst):
        Path(dst).write_text("competitor")  # appears between check and link
        return real_link(src, dst)

    monkeypatch.setattr(rs.os, "link", link_after_competitor)
    with pytest.raises(rs.ResultsError, match="already exists"):
        rs.save_run(rec, tmp_path)
    assert target.read_text() == "competitor"
    assert sorted(p.name for p in target.parent.iterdir()) == ["run_0000.json"]


def test_rename_fallback_without_hard_links(tmp_path, monkeypatch):
    def no_link(src, dst):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(rs.os, "link", no_link)
    path = rs.save_run(make_record("jax", 4), tmp_path)
    assert path.name == "run_0004.json"
    assert rs.load_runs(version="v1", results_dir=tmp_path)[0]["run_index"] == 4
    assert sorted(p.name for p in path.parent.iterdir()) == ["run_0004.json"]


@pytest.mark.parametrize("mutate, fragment", [
    (lambda r: r.pop("seed"), "seed"),
    (lambda r: r.pop("epochs"), "epochs"),
    (lambda r: r.update(schema=2), "schema"),
    (lambda r: r.update(version="../v1"), "version"),
    (lambda r: r.update(dataset="mnist"), "dataset"),
    (lambda r: r.update(framework="tf"), "framework"),
    (lambda r: r.update(run_index=-1), "run_index"),
    (lambda r: r.update(run_index=True), "run_index"),
    (lambda r: r.update(settings=[]), "settings"),
    (lambda r: r.update(epochs=[]), "epochs"),
    (lambda r: r["epochs"][1].pop("test_error"), "test_error"),
    (lambda r: r["epochs"][1].update(test_loss="x"), "test_loss"),
    (lambda r: r["epochs"][1].update(epoch=1), "epoch"),
])
def test_save_validates(tmp_path, mutate, fragment):
    rec = make_record()
    mutate(rec)
    with pytest.raises(ValueError, match=fragment):
        rs.save_run(rec, tmp_path)
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_save_unserialisable_touches_nothing(tmp_path):
    rec = make_record()
    rec["settings"]["fn"] = object()
    with pytest.raises(TypeError):
        rs.save_run(rec, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_next_run_index(tmp_path):
    args = ("fashion_mnist", "v1", "torch", tmp_path)
    assert rs.next_run_index(*args) == 0
    rs.save_run(make_record("torch", 0), tmp_path)
    assert rs.next_run_index(*args) == 1
    rs.save_run(make_record("torch", 5), tmp_path)  # gaps are not filled
    d = rs.run_dir(*args)
    (d / ".run_0009.json.123.abc.tmp").write_text("{")
    (d / "run_0042.json.tmp").write_text("{")
    assert rs.next_run_index(*args) == 6
    assert rs.next_run_index("fashion_mnist", "v1", "jax", tmp_path) == 0
    (d / "run_0007.json").write_text("garbage")  # a corrupt run still takes its index
    assert rs.next_run_index(*args) == 8
    rs.save_run(make_record("torch", 10000), tmp_path)
    assert (d / "run_10000.json").exists()
    assert rs.next_run_index(*args) == 10001


# --------------------------------------------------------------------------
# Corrupt, foreign and temp files
# --------------------------------------------------------------------------

@pytest.mark.parametrize("name, content", [
    ("run_0001.json", b'{"schema": 1, "dataset": "fashion_m'),   # truncated
    ("run_0001.json", b""),                                      # empty
    ("run_0001.json", b"\xff\xfe\x00garbage"),                   # not UTF-8
    ("run_0001.json", b"[1, 2, 3]"),                             # not an object
    ("run_0001.json", b'{"schema": 1}'),                         # lacks keys
    ("run_001.json", b"{}"),                                     # odd name
    ("notes.txt", b"hello"),                                     # foreign
])
def test_corrupt_or_foreign_file(tmp_path, capsys, name, content):
    good = rs.save_run(make_record("torch", 0, 9.0), tmp_path)
    bad = good.parent / name
    bad.write_bytes(content)
    before = snapshot(tmp_path)
    before_stats = stats_of(tmp_path)

    with pytest.raises(rs.ResultsError) as info:
        rs.load_runs(version="v1", results_dir=tmp_path)
    assert str(bad) in str(info.value)
    assert bad in info.value.paths

    with pytest.raises(rs.ResultsError) as info:
        rs.check_appendable("fashion_mnist", "v1", "torch", tmp_path)
    assert str(bad) in str(info.value)
    assert "move" in str(info.value).lower()

    runs = rs.load_runs(version="v1", results_dir=tmp_path, strict=False)
    assert [r["run_index"] for r in runs] == [0]
    err = capsys.readouterr().err
    assert "warning" in err and str(bad) in err

    # Other folders are unaffected.
    rs.check_appendable("fashion_mnist", "v1", "jax", tmp_path)
    # Nothing was changed, moved or deleted.
    assert snapshot(tmp_path) == before
    assert stats_of(tmp_path) == before_stats


def test_record_in_wrong_place_is_foreign(tmp_path):
    path = rs.save_run(make_record("jax", 0), tmp_path)
    moved = rs.run_dir("fashion_mnist", "v1", "torch", tmp_path) / "run_0003.json"
    moved.parent.mkdir(parents=True)
    moved.write_bytes(path.read_bytes())
    with pytest.raises(rs.ResultsError) as info:
        rs.check_appendable("fashion_mnist", "v1", "torch", tmp_path)
    msg = str(info.value)
    assert str(moved) in msg and "framework" in msg and "run_index" in msg
    rs.check_appendable("fashion_mnist", "v1", "jax", tmp_path)


def test_several_bad_files_all_named(tmp_path):
    d = rs.run_dir("cifar10", "v1", "torch", tmp_path)
    d.mkdir(parents=True)
    (d / "run_0000.json").write_text("{")
    (d / "run_0001.json").mkdir()
    with pytest.raises(rs.ResultsError) as info:
        rs.check_appendable("cifar10", "v1", "torch", tmp_path)
    assert str(d / "run_0000.json") in str(info.value)
    assert str(d / "run_0001.json") in str(info.value)
    assert len(info.value.paths) == 2


def test_run_folder_is_a_file(tmp_path):
    d = rs.run_dir("cifar10", "v1", "torch", tmp_path)
    d.parent.mkdir(parents=True)
    d.write_text("oops")
    with pytest.raises(rs.ResultsError, match=re.escape(str(d))):
        rs.check_appendable("cifar10", "v1", "torch", tmp_path)
    with pytest.raises(rs.ResultsError, match=re.escape(str(d))):
        rs.load_runs(version="v1", results_dir=tmp_path)
    with pytest.raises(rs.ResultsError):
        rs.save_run(make_record("torch", dataset="cifar10"), tmp_path)
    assert d.read_text() == "oops"


def test_check_appendable_ok(tmp_path):
    rs.check_appendable("fashion_mnist", "v1", "torch", tmp_path)  # no folder yet
    rs.save_run(make_record("torch", 0), tmp_path)
    rs.check_appendable("fashion_mnist", "v1", "torch", tmp_path)
    with pytest.raises(ValueError):
        rs.check_appendable("fashion_mnist", "/tmp/x", "torch", tmp_path)


def test_temp_files_ignored(tmp_path):
    rs.save_run(make_record("torch", 0, 9.0), tmp_path)
    d = rs.run_dir("fashion_mnist", "v1", "torch", tmp_path)
    (d / ".run_0001.json.999.deadbeef.tmp").write_text('{"half": ')
    (d / "run_0002.json.tmp").write_text("")
    (d / ".DS_Store").write_bytes(b"\0\0")
    runs = rs.load_runs(version="v1", results_dir=tmp_path)  # strict: no error
    assert [r["run_index"] for r in runs] == [0]
    rs.check_appendable("fashion_mnist", "v1", "torch", tmp_path)
    assert (d / ".run_0001.json.999.deadbeef.tmp").read_text() == '{"half": '


# --------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------

def test_summarize_hand_computed():
    runs = [make_record("torch", i, e) for i, e in enumerate([8.0, 9.0, 10.0])]
    runs += [make_record("jax", i, e, n_epochs=4) for i, e in enumerate([9.5, 10.5])]
    runs += [make_record("torch", 0, 20.0, dataset="cifar10")]
    s = summarize(runs)
    assert list(s) == [("fashion_mnist", "torch"), ("fashion_mnist", "jax"),
                       ("cifar10", "torch")]
    t = s[("fashion_mnist", "torch")]
    assert t["n"] == 3 and t["final_errors"] == [8.0, 9.0, 10.0]
    assert t["mean"] == pytest.approx(9.0)
    assert t["std"] == pytest.approx(1.0)              # sqrt((1+0+1)/2)
    assert t["stderr"] == pytest.approx(1 / math.sqrt(3))
    assert (t["min"], t["max"]) == (8.0, 10.0)
    assert t["epochs"] == [3, 3, 3] and t["run_indices"] == [0, 1, 2]
    j = s[("fashion_mnist", "jax")]
    assert j["n"] == 2 and j["mean"] == pytest.approx(10.0)
    assert j["std"] == pytest.approx(math.sqrt(0.5))   # sqrt((0.25+0.25)/1)
    assert j["stderr"] == pytest.approx(0.5)
    assert j["epochs"] == [4, 4]
    c = s[("cifar10", "torch")]
    assert c["n"] == 1 and c["mean"] == 20.0
    assert math.isnan(c["std"]) and math.isnan(c["stderr"])
    assert summarize([]) == {}


def test_summarize_rejects_mixed_versions():
    with pytest.raises(ValueError, match="version"):
        summarize([make_record(version="v1"), make_record(version="v2")])


# --------------------------------------------------------------------------
# Killed while writing
# --------------------------------------------------------------------------

_WRITER = r"""
import sys
sys.path.insert(0, sys.argv[1])
from demos import results_store as rs
root, fw = sys.argv[2], sys.argv[3]
pad = "p" * 50000
print("ready", flush=True)
while True:
    i = rs.next_run_index("fashion_mnist", "v1", fw, root)
    epochs = [{"epoch": e, "train_loss": 0.1, "train_accuracy": 0.9,
               "test_loss": 0.2, "test_accuracy": 0.9, "test_error": 10.0 + i,
               "learning_rate": 0.01, "seconds": 1.0} for e in range(1, 51)]
    rs.save_run({"schema": 1, "dataset": "fashion_mnist", "version": "v1",
                 "framework": fw, "run_index": i, "seed": i,
                 "settings": {"pad": pad}, "epochs": epochs}, root)
"""


def test_sigkill_while_writing_never_leaves_partial_runs(tmp_path):
    rng = random.Random(1234)
    deadline = time.monotonic() + 15.0
    kills = 0
    last_count = 0
    runs_dir = rs.run_dir("fashion_mnist", "v1", "torch", tmp_path)
    for attempt in range(50):
        if time.monotonic() > deadline and attempt >= 10:
            break
        before = snapshot(tmp_path)
        proc = subprocess.Popen(
            [sys.executable, "-S", "-c", _WRITER, str(REPO_ROOT), str(tmp_path), "torch"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
            if attempt % 5 == 4:  # progress, however slow the disk: it saves a run first
                saved_before = len(list(runs_dir.glob("run_*.json")))
                wait_until = time.monotonic() + 60
                while len(list(runs_dir.glob("run_*.json"))) == saved_before:
                    assert proc.poll() is None, proc.stderr.read()
                    assert time.monotonic() < wait_until, "the writer saved no run in 60 s"
                    time.sleep(0.002)
            time.sleep(rng.uniform(0.0, 0.03))
            proc.send_signal(signal.SIGKILL)
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == -signal.SIGKILL, err  # it never crashed by itself
        kills += 1

        # Earlier runs are byte-for-byte intact.
        after = snapshot(tmp_path)
        for path, data in before.items():
            if path.name.startswith("run_"):
                assert after[path] == data, f"{path} changed"
        # Every visible run file is complete and valid; indices are contiguous.
        rs.check_appendable("fashion_mnist", "v1", "torch", tmp_path)
        runs = rs.load_runs(version="v1", results_dir=tmp_path)
        assert [r["run_index"] for r in runs] == list(range(len(runs)))
        assert all(r["epochs"][-1]["test_error"] == 10.0 + r["run_index"] for r in runs)
        assert len(runs) >= last_count
        last_count = len(runs)
        # Only hidden temp files may be left over besides run files.
        for p in runs_dir.iterdir():
            assert re.fullmatch(r"run_\d{4}\.json", p.name) or (
                p.name.startswith(".") and p.name.endswith(".tmp")), p
    assert kills >= 10
    assert last_count > 0

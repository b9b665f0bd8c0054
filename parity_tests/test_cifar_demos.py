"""The CIFAR-10 demos end to end on a generated archive in the real binary format.

CIFAR-10 itself is not available on the project's machines; this runs the
whole path a user with the real `cifar-10-binary.tar.gz` takes (archive →
loader → network → training → results → viewer), in both frameworks, on a
tiny archive written in the same format.

With ``--random-crop --hflip`` (the augmentation meant for CIFAR-10) the demos
augment every training batch and no test batch, record the flags, resume an
augmented run to the same numbers and refuse to resume it with other flags.
The torch demo's ``--compile`` reaches the trainer, is recorded and does not
block a resume (the tests replace ``scs_torch.compiled.enable`` by a stub:
compiling takes tens of seconds and is tested with scs_torch).
"""

import json

import pytest
import scs_torch.compiled
from helpers.demo_data import make_cifar_archive
from helpers.demo_runs import StopAfter, numbers, tree_bytes

from demos import results_store, runner, show_results
from demos.augment import AugmentPlan
from demos.checkpoint import CheckpointDir, checkpoint_dir

AUGMENT = ["--random-crop", "--hflip"]


def cifar_args(cifar_dir, results, *, epochs=2, extra=()) -> list[str]:
    """The demo's argv on the generated archive: 20 images in batches of 8 (8 + 8 + 4)."""
    return ["c10", "--epochs", str(epochs), "--runs", "1", "--batch-size", "8", "--data-dir",
            str(cifar_dir), "--no-checksum", "--results-dir", str(results), "--no-progress", *extra]


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cifar")
    make_cifar_archive(folder, per_batch=4, n_test=6)  # 20 training, 6 test images
    return folder


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_cifar10_demo_trains_and_saves_a_run(framework, cifar_dir, tmp_path, capsys):
    results = tmp_path / "results"
    argv = ["c10", "--epochs", "2", "--runs", "1", "--batch-size", "8", "--data-dir", str(cifar_dir),
            "--no-checksum", "--results-dir", str(results), "--no-progress"]
    assert runner.main("cifar10", framework, argv) == 0
    out = capsys.readouterr().out
    assert "cifar10: 20 training and 6 test images" in out
    assert out.count("epoch   2/2") == 1
    (path,) = (results / "cifar10" / "c10" / framework).glob("run_*.json")
    record = json.loads(path.read_text())
    assert record["dataset"] == "cifar10" and record["framework"] == framework
    assert [e["epoch"] for e in record["epochs"]] == [1, 2]
    assert record["settings"]["steps_per_epoch"] == 3  # 20 images, batches of 8: 8 + 8 + 4
    assert record["settings"]["random_crop_padding"] == 0 and record["settings"]["hflip"] is False
    for entry in record["epochs"]:
        assert 0.0 <= entry["test_accuracy"] <= 1.0 and entry["train_loss"] > 0
    runs = results_store.load_runs("cifar10", "c10", framework, results)
    assert len(runs) == 1


def test_show_results_reads_cifar10_versions(cifar_dir, tmp_path, capsys):
    results = tmp_path / "results"
    for framework in ("torch", "jax"):
        argv = ["c10", "--epochs", "1", "--runs", "1", "--batch-size", "8", "--data-dir",
                str(cifar_dir), "--no-checksum", "--results-dir", str(results), "--no-progress"]
        assert runner.main("cifar10", framework, argv) == 0
    capsys.readouterr()
    plots = tmp_path / "plots"
    status = show_results.main(["c10", "--dataset", "cifar10", "--results-dir", str(results),
                                "--plot-dir", str(plots)])
    assert status == 0
    out = capsys.readouterr().out
    assert "cifar10" in out and "torch" in out and "jax" in out
    assert (plots / "results_c10.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_cifar10_demo_with_augmentation(framework, cifar_dir, tmp_path, monkeypatch, capsys):
    """Every training batch is augmented from the plan (epoch by epoch), no test batch is."""
    asked = []
    batch_indices = AugmentPlan.batch_indices

    def spy(plan, indices, epoch):
        asked.append((len(indices), epoch, plan.crop_padding, plan.hflip))
        return batch_indices(plan, indices, epoch)

    monkeypatch.setattr(AugmentPlan, "batch_indices", spy)
    results = tmp_path / "results"
    assert runner.main("cifar10", framework, cifar_args(cifar_dir, results, extra=AUGMENT)) == 0
    assert capsys.readouterr().out.count("epoch   2/2") == 1
    # Three training batches an epoch (8 + 8 + 4); evaluating the 6 test images asks nothing.
    assert asked == [(8, 0, 4, True), (8, 0, 4, True), (4, 0, 4, True),
                     (8, 1, 4, True), (8, 1, 4, True), (4, 1, 4, True)]
    (record,) = results_store.load_runs("cifar10", "c10", framework, results)
    assert record["settings"]["random_crop_padding"] == 4 and record["settings"]["hflip"] is True
    assert [e["epoch"] for e in record["epochs"]] == [1, 2]
    assert all(0.0 <= e["test_accuracy"] <= 1.0 and e["train_loss"] > 0 for e in record["epochs"])


def test_augmentation_flags_parse_for_both_frameworks_and_compile_for_torch_only(capsys):
    for framework in ("torch", "jax"):
        args = runner.parse_args("cifar10", framework, ["v1"])
        assert args.random_crop is False and args.hflip is False
        args = runner.parse_args("cifar10", framework, ["v1", *AUGMENT])
        assert args.random_crop is True and args.hflip is True
    assert runner.parse_args("cifar10", "torch", ["v1", "--compile"]).compile is True
    assert runner.parse_args("fashion_mnist", "torch", ["v1"]).compile is False
    with pytest.raises(SystemExit):
        runner.parse_args("cifar10", "jax", ["v1", "--compile"])
    assert "unrecognized arguments: --compile" in capsys.readouterr().err


@pytest.fixture
def compile_stub(monkeypatch):
    """``scs_torch.compiled.enable`` counted, not run; SCS_TORCH_COMPILE unset."""
    calls = []
    monkeypatch.delenv("SCS_TORCH_COMPILE", raising=False)
    monkeypatch.setattr(scs_torch.compiled, "enable", lambda: calls.append(1))
    return calls


def test_compile_flag_reaches_the_torch_trainer_and_is_recorded(compile_stub, cifar_dir, tmp_path):
    results = tmp_path / "results"
    assert runner.main("cifar10", "torch", cifar_args(cifar_dir, results, epochs=1)) == 0
    assert compile_stub == []
    assert runner.main("cifar10", "torch", cifar_args(cifar_dir, results, epochs=1,
                                                      extra=["--compile"])) == 0
    assert compile_stub == [1]
    runs = results_store.load_runs("cifar10", "c10", "torch", results)
    assert [r["settings"]["torch_compile"] for r in runs] == [False, True]


def test_augmented_run_resumes_to_the_same_numbers_and_other_flags_are_refused(
        compile_stub, cifar_dir, tmp_path, monkeypatch, capsys):
    """torch, 3 epochs with crop + flip, stopped after epoch 1: resuming with other
    augmentation flags is refused (checkpoint untouched); with the same flags (and
    --compile, which may change) it gives the uninterrupted run's numbers."""
    full, stopped = tmp_path / "full", tmp_path / "stopped"
    argv = cifar_args(cifar_dir, full, epochs=3, extra=AUGMENT)
    with monkeypatch.context() as patch:
        stop = StopAfter(0, 1, copy_to=checkpoint_dir("cifar10", "c10", "torch", stopped))
        patch.setattr(CheckpointDir, "save", stop.method())
        assert runner.main("cifar10", "torch", argv) == 0
    assert stop.hit
    capsys.readouterr()

    entry = checkpoint_dir("cifar10", "c10", "torch", stopped) / "run_0000_epoch_0001"
    before = tree_bytes(entry)
    for flags, expected in [
        (["--hflip"], ["random_crop_padding 4 in the checkpoint, 0 now (--random-crop / --crop-padding)"]),
        (["--random-crop"], ["hflip True in the checkpoint, False now (--hflip)"]),
        ([], ["random_crop_padding 4 in the checkpoint, 0 now (--random-crop / --crop-padding)",
              "hflip True in the checkpoint, False now (--hflip)"]),
    ]:
        assert runner.main("cifar10", "torch", cifar_args(cifar_dir, stopped, epochs=3, extra=flags)) == 2
        err = capsys.readouterr().err
        assert f"{entry} holds unfinished run 0 (epoch 1 of 3)" in err
        for text in expected:
            assert text in err
        assert "Traceback" not in err
        assert tree_bytes(entry) == before, "a refused checkpoint must be left untouched"

    assert runner.main("cifar10", "torch",
                       cifar_args(cifar_dir, stopped, epochs=3, extra=[*AUGMENT, "--compile"])) == 0
    assert "resuming run 0 after epoch 1 of 3" in capsys.readouterr().out
    assert compile_stub == [1]
    (uninterrupted,), (resumed,) = (results_store.load_runs("cifar10", "c10", "torch", r)
                                    for r in (full, stopped))
    assert numbers(resumed) == numbers(uninterrupted)
    assert resumed["settings"] == uninterrupted["settings"]
    assert resumed["settings"]["torch_compile"] is False  # as the run started
    assert [(r["after_epoch"], r["torch_compile"]) for r in resumed["resumed"]] == [(1, True)]


def test_checkpoint_from_before_the_augmentation_flags_resumes_without_them(
        cifar_dir, tmp_path, monkeypatch, capsys):
    """A checkpoint whose settings lack random_crop_padding / hflip was made without augmentation."""
    results = tmp_path / "results"
    with monkeypatch.context() as patch:
        patch.setattr(CheckpointDir, "save", StopAfter(0, 1, interrupt=True).method())
        assert runner.main("cifar10", "torch", cifar_args(cifar_dir, results, epochs=2)) == 0
    meta_path = checkpoint_dir("cifar10", "c10", "torch", results) / "run_0000_epoch_0001" / "meta.json"
    meta = json.loads(meta_path.read_text())
    del meta["record"]["settings"]["random_crop_padding"], meta["record"]["settings"]["hflip"]
    meta_path.write_text(json.dumps(meta))
    capsys.readouterr()
    assert runner.main("cifar10", "torch", cifar_args(cifar_dir, results, epochs=2, extra=["--hflip"])) == 2
    assert "hflip False in the checkpoint, True now (--hflip)" in capsys.readouterr().err
    assert runner.main("cifar10", "torch", cifar_args(cifar_dir, results, epochs=2)) == 0
    assert "resuming run 0 after epoch 1 of 2" in capsys.readouterr().out

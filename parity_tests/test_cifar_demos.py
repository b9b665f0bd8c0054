"""The CIFAR-10 demos end to end on a generated archive in the real binary format.

CIFAR-10 itself is not available on the project's machines; this runs the
whole path a user with the real `cifar-10-binary.tar.gz` takes (archive →
loader → network → training → results → viewer), in both frameworks, on a
tiny archive written in the same format.
"""

import json

import pytest

from demos import results_store, runner, show_results
from test_data import make_cifar_archive


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

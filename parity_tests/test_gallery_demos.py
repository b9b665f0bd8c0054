"""``--arch``: the gallery's networks in the demos, their recipes, records and readers.

``--arch NAME`` selects a network of the dataset's gallery (``reference`` by
default) and its recipe as the other flags' defaults; flags override; the
parameter count is printed at start and each record keeps ``arch``,
``parameters`` and ``label_smoothing``; a version keeps one network (a run of
another is refused, so is a resume under another ``--arch``);
``show_results.py`` never pools networks and ``compare_frameworks.py`` refuses
to compare them. Label-smoothed cross-entropy is the same in both frameworks
(loss and gradients, at the layer tolerances). The CIFAR-10 gallery trains end
to end on the generated archive (the residual network in ``.ci/run``).
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
import torch.nn.functional as F
from helpers.demo_data import make_cifar_archive, make_idx_dir
from helpers.demo_runs import StopAfter, demo_args
from helpers.parity import DTYPES, TOLERANCES, TORCH_DTYPES, assert_close, jax_precision

from demos import cli, compare_frameworks, gallery, results_store, runner, show_results
from demos.checkpoint import CheckpointDir
from demos.losses import check_label_smoothing, smoothed_cross_entropy


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory):
    return make_idx_dir(tmp_path_factory.mktemp("idx"))


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cifar")
    make_cifar_archive(folder, per_batch=4, n_test=6)  # 20 training, 6 test images
    return folder


# ------------------------------------------------------------------ command line


def test_arch_selects_the_network_and_its_recipe():
    args = cli.parse_args("fashion_mnist", "torch", ["v1", "--arch", "gallery_2764"])
    assert (args.arch, args.parameters) == ("gallery_2764", 2764)
    assert (args.epochs, args.batch_size, args.max_lr, args.label_smoothing) == (200, 100, 0.03, 0.0)
    assert (args.random_crop, args.crop_padding, args.hflip) == (True, 2, True)
    args = cli.parse_args("cifar10", "jax", ["--arch", "gallery_25214"])
    assert (args.epochs, args.batch_size, args.max_lr, args.label_smoothing) == (300, 64, 0.05, 0.05)
    assert (args.random_crop, args.crop_padding, args.hflip, args.parameters) == (True, 3, True, 24974)
    args = cli.parse_args("cifar10", "jax", [])
    assert (args.arch, args.parameters, args.epochs, args.random_crop, args.hflip) == \
        ("reference", 22037, 100, False, False)


def test_flags_override_the_recipe():
    args = cli.parse_args("fashion_mnist", "jax", [
        "--arch", "compact_1950", "--epochs", "7", "--batch-size", "50", "--max-lr", "0.02",
        "--label-smoothing", "0.1", "--no-random-crop", "--no-hflip"])
    assert (args.epochs, args.batch_size, args.max_lr, args.label_smoothing) == (7, 50, 0.02, 0.1)
    assert (args.random_crop, args.hflip) == (False, False)
    args = cli.parse_args("cifar10", "torch", ["--random-crop", "--crop-padding", "2", "--hflip"])
    assert (args.arch, args.random_crop, args.crop_padding, args.hflip) == ("reference", True, 2, True)


@pytest.mark.parametrize("argv,message", [
    (["--arch", "resnet"], "argument --arch: invalid choice: 'resnet' (choose from 'reference', "
                           "'gallery_2764', 'compact_1950', 'compact_2000', "
                           "'compact_1980')"),
    (["--label-smoothing", "1"], "argument --label-smoothing: expected a number in [0, 1), got '1'"),
    (["--label-smoothing", "-0.1"], "expected a number in [0, 1), got '-0.1'"),
    (["--crop-padding", "0"], "argument --crop-padding: expected a positive integer, got '0'"),
])
def test_bad_gallery_flags_are_refused_by_name(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args("fashion_mnist", "torch", argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_help_lists_the_networks_with_their_parameter_counts(capsys):
    with pytest.raises(SystemExit):
        cli.parse_args("cifar10", "torch", ["--arch", "residual_1251k", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "reference: 22,037 parameters; gallery_25214: 24,974 parameters; residual_1251k: " \
           "1,251,284 parameters" in text
    assert "The defaults shown are those of --arch residual_1251k" in text
    assert "examples per batch (default: 128)" in text


# ------------------------------------------------------------------ label smoothing


@pytest.mark.parametrize("smoothing", [0.0, 0.05, 0.3])
@pytest.mark.parametrize("dtype", DTYPES)
def test_label_smoothing_same_loss_and_gradients(smoothing, dtype, rng):
    """torch's F.cross_entropy(label_smoothing=ε) and optax.smooth_labels + softmax_cross_entropy."""
    logits = rng.normal(0, 3, (32, 10))
    labels = rng.integers(0, 10, 32)
    if dtype == "float32":
        logits = logits.astype(np.float32)
    x = torch.tensor(logits, dtype=TORCH_DTYPES[dtype], requires_grad=True)
    loss_t = F.cross_entropy(x, torch.from_numpy(labels), label_smoothing=smoothing)
    (grad_t,) = torch.autograd.grad(loss_t, x)
    with jax_precision(dtype):
        def loss_fn(z):
            return smoothed_cross_entropy(z, jnp.asarray(labels), smoothing).mean()

        loss_j, grad_j = jax.value_and_grad(loss_fn)(jnp.asarray(logits, dtype))
        assert loss_j.dtype == jnp.dtype(dtype)
    tol = TOLERANCES[dtype]
    assert_close(loss_j, loss_t.item(), tol["output"], f"smoothed loss {dtype} {smoothing}",
                 kind="output", dtype=dtype)
    assert_close(grad_j, grad_t, tol["grad"], f"d smoothed loss/d logits {dtype} {smoothing}",
                 kind="grad", dtype=dtype)


def test_label_smoothing_is_the_textbook_target():
    logits = jnp.asarray([[2.0, -1.0, 0.5]])
    expected = -jnp.sum(jnp.asarray([0.9 + 0.1 / 3, 0.1 / 3, 0.1 / 3]) * jax.nn.log_softmax(logits))
    assert np.isclose(smoothed_cross_entropy(logits, jnp.asarray([0]), 0.1)[0], expected, rtol=1e-6)
    assert np.isclose(smoothed_cross_entropy(logits, jnp.asarray([0]), 0.0)[0],
                      optax.softmax_cross_entropy_with_integer_labels(logits, jnp.asarray([0]))[0])


@pytest.mark.parametrize("value", [-0.1, 1.0, float("nan"), True, "0.1", None])
def test_label_smoothing_bad_values_are_named(value):
    with pytest.raises(ValueError, match=r"label_smoothing: expected a number in \[0, 1\), got"):
        check_label_smoothing(value)


# ------------------------------------------------------------------ the demos


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_gallery_network_trains_and_records_its_arch(framework, idx_dir, tmp_path, capsys):
    results = tmp_path / "results"
    argv = demo_args(idx_dir, results, epochs=2, extra=["--arch", "compact_1950",
                                                         "--label-smoothing", "0.1"])
    assert runner.main("fashion_mnist", framework, argv) == 0
    out = capsys.readouterr().out
    assert "fashion_mnist --arch compact_1950: 1,950 parameters" in out
    (record,) = results_store.load_runs("fashion_mnist", "t1", framework, results)
    settings = record["settings"]
    assert (settings["arch"], settings["parameters"], settings["label_smoothing"]) == \
        ("compact_1950", 1950, 0.1)
    assert (settings["random_crop_padding"], settings["hflip"]) == (2, True)  # the recipe's
    assert (settings["batch_size"], settings["max_lr"]) == (16, 0.03)  # flag, recipe


def test_a_version_keeps_one_network(idx_dir, tmp_path, capsys):
    results = tmp_path / "results"
    assert runner.main("fashion_mnist", "torch", demo_args(idx_dir, results, epochs=1)) == 0
    argv = demo_args(idx_dir, results, epochs=1, extra=["--arch", "gallery_2764"])
    assert runner.main("fashion_mnist", "torch", argv) == 2
    err = capsys.readouterr().err
    assert "holds runs of --arch reference, not gallery_2764: a version keeps one network" in err
    assert len(results_store.load_runs("fashion_mnist", "t1", "torch", results)) == 1


def test_a_resume_under_another_arch_is_refused(idx_dir, tmp_path, monkeypatch, capsys):
    results = tmp_path / "results"
    stop = StopAfter(0, 1, interrupt=True)
    monkeypatch.setattr(CheckpointDir, "save", stop.method())
    argv = demo_args(idx_dir, results, epochs=3, extra=["--arch", "compact_1950"])
    assert runner.main("fashion_mnist", "jax", argv) == 0 and stop.hit
    monkeypatch.undo()
    argv = demo_args(idx_dir, results, epochs=3, extra=["--arch", "gallery_2764"])
    assert runner.main("fashion_mnist", "jax", argv) == 2
    err = capsys.readouterr().err
    assert "arch 'compact_1950' in the checkpoint, 'gallery_2764' now (--arch)" in err


def _write_runs(results, arch_by_framework, version="mix"):
    for framework, archs in arch_by_framework.items():
        for index, arch in enumerate(archs):
            record = {
                "schema": 1, "dataset": "fashion_mnist", "version": version, "framework": framework,
                "run_index": index, "seed": index,
                "settings": {"epochs": 1, "batch_size": 100, "max_lr": 0.03, "arch": arch},
                "epochs": [{"epoch": 1, "train_loss": 1.0, "train_accuracy": 0.5, "test_loss": 1.0,
                            "test_accuracy": 0.9 - index / 100, "test_error": 10.0 + index,
                            "learning_rate": 0.03, "seconds": 1.0}],
                "started": "2026-01-01T00:00:00+00:00", "finished": "2026-01-01T00:01:00+00:00",
                "packages": {}, "host": {"cpu": "test", "cores": 2, "device": "cpu"},
            }
            results_store.save_run(record, results)


def test_show_results_never_pools_networks(tmp_path, capsys):
    results = tmp_path / "results"
    _write_runs(results, {"torch": ["gallery_2764", "compact_1950"], "jax": ["gallery_2764"]})
    assert show_results.main(["mix", "--results-dir", str(results), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "mixes networks (gallery_2764, compact_1950); each is shown on its own" in out
    assert out.count("== fashion_mnist / mix") == 2
    assert "--arch gallery_2764" in out and "--arch compact_1950" in out


def test_compare_frameworks_refuses_mixed_networks(tmp_path, capsys):
    results = tmp_path / "results"
    _write_runs(results, {"torch": ["gallery_2764", "compact_1950"], "jax": ["gallery_2764"] * 2})
    status = compare_frameworks.main(["mix", "--results-dir", str(results), "--no-write"])
    assert status != 0
    err = capsys.readouterr().err
    assert "do not share their settings" in err and "arch='compact_1950'" in err


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_cifar10_gallery_trains_end_to_end(framework, cifar_dir, tmp_path, capsys):
    """gallery_25214 with its recipe's label smoothing and augmentation, one short epoch."""
    results = tmp_path / "results"
    argv = ["g", "--arch", "gallery_25214", "--epochs", "1", "--runs", "1", "--batch-size", "8",
            "--data-dir", str(cifar_dir), "--no-checksum", "--results-dir", str(results),
            "--no-progress"]
    assert runner.main("cifar10", framework, argv) == 0
    (path,) = (results / "cifar10" / "g" / framework).glob("run_*.json")
    settings = json.loads(path.read_text())["settings"]
    assert (settings["arch"], settings["parameters"], settings["label_smoothing"]) == \
        ("gallery_25214", 24974, 0.05)
    assert (settings["random_crop_padding"], settings["hflip"]) == (3, True)
    assert "cifar10 --arch gallery_25214: 24,974 parameters" in capsys.readouterr().out


def test_every_entry_has_a_recipe_that_the_command_line_takes():
    for entry in gallery.FASHION_MNIST_ENTRIES + gallery.CIFAR10_ENTRIES:
        dataset = "fashion_mnist" if entry.architecture.input_shape[0] == 1 else "cifar10"
        args = cli.parse_args(dataset, "jax", ["--arch", entry.name])
        recipe = entry.recipe
        assert (args.epochs, args.batch_size, args.max_lr, args.seed, args.label_smoothing,
                args.random_crop, args.crop_padding, args.hflip) == \
            (recipe.epochs, recipe.batch_size, recipe.max_lr, recipe.seed, recipe.label_smoothing,
             recipe.random_crop, recipe.crop_padding, recipe.hflip)

"""Parallel runs (``--parallel-runs K``): each run of a group is the sequential run with its seed.

* Trainers, float64, two epochs (100 generated images, batch 32: a partial
  last batch; augmentation on): each of K = 3 runs of a
  :class:`~demos.parallel_jax.JaxRunGroup` / :class:`~demos.parallel_torch.TorchRunGroup`
  equals the sequential trainer with its seed to relative 1e-12 (every step's
  loss, both evaluations, the final parameters), for both ways of mapping the
  step over the runs (``vmap`` and ``map``).
* JAX, the run axis sharded over two devices (a subprocess with
  ``--xla_force_host_platform_device_count=2``; K = 3 padded to 4): equal to
  the same group on one device.
* The demos (float32, the robustness tests' generated images): records like
  the sequential ones plus ``"group"``, each run checkpointed on its own;
  resumed as a group bit for bit, by a sequential worker to float32 rounding;
  groups claim blocks of runs alongside sequential workers; a run that diverges
  is abandoned alone, a K that does not fit is refused naming the largest that
  would, ``show_results`` reads the records.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from helpers.demo_data import make_idx_dir
from helpers.demo_runs import DATASET, REPO, VERSION, StopAfter, demo_args, numbers
from helpers.parity import jax_precision, relative_error
from helpers.scan_runs import drive

from demos import registry, results_store, runner, show_results
from demos.architectures import FASHION_MNIST
from demos.augment import AugmentPlan
from demos.batch_plan import BatchPlan
from demos.checkpoint import CheckpointDir, checkpoint_dir
from demos.claims import claims_dir
from demos.optim import OneCycle
from demos.run_memory import TooManyRunsError, check_fits

RTOL = 1e-12
SEEDS = [7, 8, 9]
N, BATCH, EPOCHS = 100, 32, 2


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.random((N, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, N)


def _sequential(framework: str, images, labels, seed: int, architecture=FASHION_MNIST, label_smoothing=0.0):
    plan = BatchPlan(N, BATCH, seed)
    augment = AugmentPlan(N, (28, 28), seed, crop_padding=4, hflip=True)
    schedule = OneCycle(0.01, EPOCHS * plan.steps_per_epoch)
    if framework == "jax":
        from demos.train_jax import JaxTrainer as Trainer
    else:
        from demos.train_torch import TorchTrainer as Trainer
    trainer = Trainer(architecture, schedule, images, labels, seed=seed, dtype="float64",
                      batch_size=BATCH, augment=augment, label_smoothing=label_smoothing)
    return drive(trainer, plan, EPOCHS, images[:70], labels[:70])


def _group(framework: str, mode: str, images, labels, architecture=FASHION_MNIST, **options):
    plans = [BatchPlan(N, BATCH, seed) for seed in SEEDS]
    augments = [AugmentPlan(N, (28, 28), seed, crop_padding=4, hflip=True) for seed in SEEDS]
    schedule = OneCycle(0.01, EPOCHS * plans[0].steps_per_epoch)
    if framework == "jax":
        from demos.parallel_jax import JaxRunGroup

        group = JaxRunGroup(architecture, schedule, images, labels, seeds=SEEDS, dtype="float64",
                            batch_size=BATCH, augments=augments, mode=mode,
                            steps_per_epoch=plans[0].steps_per_epoch, steps_per_call=3, **options)
    else:
        from demos.parallel_torch import TorchRunGroup

        group = TorchRunGroup(architecture, schedule, images, labels, seeds=SEEDS, dtype="float64",
                              batch_size=BATCH, augments=augments, mode=mode, **options)
    losses, evaluations = np.zeros((len(SEEDS), 0)), []
    for epoch in range(EPOCHS):
        group.set_epoch(epoch)
        batches = [plan.batches(epoch) for plan in plans]
        chunk = group.steps_per_call or len(batches[0])
        for start in range(0, len(batches[0]), chunk):
            losses = np.concatenate([losses, group.train_steps([b[start:start + chunk] for b in batches])[0]], 1)
        evaluations.append(group.evaluate(images[:70], labels[:70]))
    return group, losses, evaluations


_GALLERY = {"arch": "compact_1950", "label_smoothing": 0.1}


@pytest.mark.parametrize("recipe", [None, _GALLERY], ids=["reference", "gallery"])
@pytest.mark.parametrize("mode", ["vmap", "map"])
@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_each_parallel_run_equals_its_sequential_run_float64(framework, mode, recipe, data):
    """Also for a gallery network (depthwise SCS, Scale layers) trained with label smoothing."""
    options = {}
    if recipe is not None:
        options = {"architecture": registry.get(DATASET).entry(recipe["arch"]).architecture,
                   "label_smoothing": recipe["label_smoothing"]}
    with jax_precision("float64"):
        group, losses, evaluations = _group(framework, mode, *data, **options)
        if recipe is not None:  # the smoothing reaches the group's loss
            plain = _group(framework, mode, *data, architecture=options["architecture"])[1]
            assert np.all(np.abs(plain[:, 0] - losses[:, 0]) > 1e-3 * np.abs(plain[:, 0]))
        worst = 0.0
        for k, seed in enumerate(SEEDS):
            seq_losses, seq_evaluations, seq_params = _sequential(framework, *data, seed, **options)
            assert len(seq_losses) == EPOCHS * 4 and losses.shape == (len(SEEDS), len(seq_losses))
            errors = np.abs(losses[k] - seq_losses) / np.abs(seq_losses)
            assert errors.max() <= RTOL, f"run {k}: step {errors.argmax()} {errors.max():.2e}"
            for epoch, (loss, accuracy) in enumerate(seq_evaluations):
                assert abs(evaluations[epoch][k][0] - loss) <= RTOL * loss, (k, epoch)
                assert evaluations[epoch][k][1] == accuracy
            params = group.run_parameters(k)
            for name, expected in seq_params.items():
                assert params[name].dtype == np.float64
                assert relative_error(params[name], expected) <= RTOL, (k, name)
                worst = max(worst, relative_error(params[name], expected))
            worst = max(worst, float(errors.max()))
        print(f"{framework} {mode}: worst relative difference {worst:.1e}")


_SHARDED = textwrap.dedent("""
    import os, sys
    os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=2"
    sys.path[:0] = [{repo!r}, {tests!r}]
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np
    import test_parallel_runs as T
    assert len(jax.devices()) == 2
    rng = np.random.default_rng(0)
    data = rng.random((T.N, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, T.N)
    one, losses_one, evals_one = T._group("jax", "vmap", *data, devices=jax.devices()[:1])
    two, losses_two, evals_two = T._group("jax", "vmap", *data)
    assert two.padded_runs == 4 and one.padded_runs == 3
    assert all(len(leaf.sharding.device_set) == 2 for leaf in jax.tree.leaves(two.params))
    worst = max(float(np.max(np.abs(losses_two - losses_one) / np.abs(losses_one))),
                max(abs(a[0] - b[0]) / b[0] for e1, e2 in zip(evals_two, evals_one) for a, b in zip(e1, e2)),
                max(float(np.max(np.abs(two.run_parameters(k)[n] - p)) / np.max(np.abs(p)))
                    for k in range(3) for n, p in one.run_parameters(k).items()))
    print("worst relative difference", worst)
    assert worst <= T.RTOL, worst
""")


def test_sharded_over_two_devices_equals_one_device():
    script = _SHARDED.format(repo=str(REPO), tests=str(REPO / "parity_tests"))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
    assert done.returncode == 0, done.stdout + done.stderr
    print(done.stdout.strip())


def test_check_fits_names_the_largest_k():
    estimate = check_fits(10, per_run=100.0, shared=50.0, capacity=2000.0, where="cuda:0")
    assert estimate["needed_bytes"] == 1050
    with pytest.raises(TooManyRunsError, match=r"--parallel-runs 30: expected to fit in the memory of cuda:0.*"
                                               r"the largest --parallel-runs that fits is 17"):
        check_fits(30, per_run=100.0, shared=50.0, capacity=2000.0, where="cuda:0")
    with pytest.raises(TooManyRunsError, match="largest --parallel-runs that fits is 34"):  # 17 per device
        check_fits(64, per_run=100.0, shared=50.0, capacity=2000.0, where="cuda:0", devices=2)
    assert check_fits(10**9, per_run=1.0, shared=0.0, capacity=None, where="")["capacity_bytes"] is None


# ------------------------------------------------------------------ the demos


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory):
    return make_idx_dir(tmp_path_factory.mktemp("idx"))


def _runs(results, framework):
    return results_store.load_runs(DATASET, VERSION, framework, results)


def _close(got: list[dict], expected: list[dict]) -> None:
    """float32 demo runs: the same steps, rounding apart (the group's own summation order)."""
    for a, b in zip(got, expected):
        for entry_a, entry_b in zip(numbers(a), numbers(b), strict=True):
            assert entry_a.keys() == entry_b.keys()
            assert all(abs(entry_a[k] - entry_b[k]) <= 1e-5 * max(abs(entry_b[k]), 1) for k in entry_a)


def test_demo_records_resume_and_show_results_torch(idx_dir, tmp_path, monkeypatch, capsys):
    """Three runs in groups of two (the last group of one) give the sequential demo's records
    plus "group"; a copy of the first group's epoch-1 checkpoints (one per run) resumes to the
    same numbers, as a group, and a sequential worker resumes them too."""
    parallel, sequential, copy = tmp_path / "parallel", tmp_path / "sequential", tmp_path / "copy"
    stop = StopAfter(1, 1, copy_to=checkpoint_dir(DATASET, VERSION, "torch", copy))
    monkeypatch.setattr(CheckpointDir, "save", stop.method())
    assert runner.main(DATASET, "torch", demo_args(idx_dir, parallel, runs=3, extra=["--parallel-runs", "2"])) == 0
    monkeypatch.undo()
    assert stop.hit
    assert sorted(p.name for p in checkpoint_dir(DATASET, VERSION, "torch", copy).iterdir()) == [
        "run_0000_epoch_0001", "run_0001_epoch_0001"]
    shutil.copytree(copy, tmp_path / "copy2")
    assert runner.main(DATASET, "torch", demo_args(idx_dir, sequential, runs=3)) == 0
    got, expected = _runs(parallel, "torch"), _runs(sequential, "torch")
    assert [r["run_index"] for r in got] == [0, 1, 2]
    assert [r["group"]["runs"] for r in got] == [[0, 1], [0, 1], [2]]
    assert all(r["group"]["mode"] == "map" and r["group"]["devices"] == 1 for r in got)  # auto on a CPU
    for a, b in zip(got, expected):
        assert (a["seed"], a["settings"]) == (b["seed"], b["settings"])
        assert set(a) - set(b) == {"group"}
    _close(got, expected)

    capsys.readouterr()
    argv = demo_args(idx_dir, copy, runs=2, extra=["--parallel-runs", "2"])
    assert runner.main(DATASET, "torch", argv) == 0  # the group of 2 resumed as a group
    assert "resuming runs 0, 1 after epoch 1 of 3" in capsys.readouterr().out
    resumed = _runs(copy, "torch")
    assert [numbers(r) for r in resumed] == [numbers(r) for r in got[:2]]
    assert [r["resumed"][0]["group"]["runs"] for r in resumed] == [[0, 1]] * 2
    assert runner.main(DATASET, "torch", demo_args(idx_dir, tmp_path / "copy2", runs=2)) == 0  # one at a time
    assert "resuming run 1 after epoch 1 of 3" in capsys.readouterr().out
    _close(_runs(tmp_path / "copy2", "torch"), got[:2])
    assert show_results.main([VERSION, "--results-dir", str(parallel), "--plot-dir", str(tmp_path / "p")]) == 0
    assert capsys.readouterr().out.count("torch") >= 1


def test_demo_diverging_run_of_a_group_is_dropped_alone(idx_dir, tmp_path, monkeypatch, capsys):
    from demos.parallel_torch import TorchRunGroup

    real = TorchRunGroup.train_steps

    def train_steps(self, batches):
        losses, corrects = real(self, batches)
        if self.epoch == 1:
            losses[1, 1] = float("nan")  # run 1, epoch 2, step 2
        return losses, corrects

    monkeypatch.setattr(TorchRunGroup, "train_steps", train_steps)
    results = tmp_path / "results"
    assert runner.main(DATASET, "torch", demo_args(idx_dir, results, runs=3, extra=["--parallel-runs", "3"])) == 1
    err = capsys.readouterr().err
    assert "run 1: the training loss became nan at epoch 2, step 2 of 3 (global step 5)" in err
    assert [r["run_index"] for r in _runs(results, "torch")] == [0, 2]
    folder = checkpoint_dir(DATASET, VERSION, "torch", results)
    assert sorted(p.name for p in folder.iterdir()) == [".lock", "failed_run_0001.json"]
    assert not any(claims_dir(DATASET, VERSION, "torch", results).glob("claim_*"))
    assert len(json.loads((folder / "failed_run_0001.json").read_text())["epochs"]) == 1


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_demo_refuses_a_k_that_does_not_fit(framework, idx_dir, tmp_path, capsys):
    results = tmp_path / "results"
    argv = demo_args(idx_dir, results, runs=10**7, extra=["--parallel-runs", "10000000"])
    assert runner.main(DATASET, framework, argv) == 2
    err = capsys.readouterr().err
    assert "error: --parallel-runs 10000000: expected to fit in the memory of the host" in err
    assert "the largest --parallel-runs that fits is" in err
    assert not results_store.run_dir(DATASET, VERSION, framework, results).exists()


def test_parallel_runs_must_be_positive(idx_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        runner.main(DATASET, "jax", demo_args(idx_dir, tmp_path, extra=["--parallel-runs", "0"]))
    assert stop.value.code == 2
    assert "argument --parallel-runs: expected a positive integer, got '0'" in capsys.readouterr().err


def test_demo_jax_group_resumes_bit_for_bit(idx_dir, tmp_path, monkeypatch, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    stop = StopAfter(1, 2, copy_to=checkpoint_dir(DATASET, VERSION, "jax", b))
    monkeypatch.setattr(CheckpointDir, "save", stop.method())
    argv = ["--parallel-runs", "2", "--parallel-mode", "vmap"]
    assert runner.main(DATASET, "jax", demo_args(idx_dir, a, runs=2, extra=argv)) == 0
    monkeypatch.undo()
    capsys.readouterr()
    assert runner.main(DATASET, "jax", demo_args(idx_dir, b, runs=2, extra=argv)) == 0
    assert "resuming runs 0, 1 after epoch 2 of 3" in capsys.readouterr().out
    full, resumed = _runs(a, "jax"), _runs(b, "jax")
    assert [r["group"] for r in full] == [{"runs": [0, 1], "mode": "vmap", "devices": 1}] * 2
    assert [numbers(r) for r in resumed] == [numbers(r) for r in full]
    assert [r["resumed"][0]["after_epoch"] for r in resumed] == [2, 2]
    sequential = tmp_path / "sequential"
    assert runner.main(DATASET, "jax", demo_args(idx_dir, sequential, runs=2)) == 0
    _close(full, _runs(sequential, "jax"))


def test_demo_groups_and_a_sequential_worker_share_the_runs(idx_dir, tmp_path, capsys):
    """Claims: a group takes the next block of K runs after a sequential worker's run,
    and a sequential worker then takes the next index."""
    results = tmp_path / "results"
    assert runner.main(DATASET, "torch", demo_args(idx_dir, results, runs=1, epochs=2)) == 0
    assert runner.main(DATASET, "torch", demo_args(idx_dir, results, runs=2, epochs=2,
                                                   extra=["--parallel-runs", "2"])) == 0
    assert runner.main(DATASET, "torch", demo_args(idx_dir, results, runs=1, epochs=2)) == 0
    records = _runs(results, "torch")
    assert [(r["run_index"], r.get("group", {}).get("runs")) for r in records] == [
        (0, None), (1, [1, 2]), (2, [1, 2]), (3, None)]
    assert not any(claims_dir(DATASET, VERSION, "torch", results).glob("claim_*"))

"""Paired runs: a JAX run started from a torch run's initial parameters, and their comparison.

* ``--init-from torch`` makes the JAX demo start each run from exactly the
  parameters the torch demo starts the run of the same seed from (and the
  torch demo's ``--init-from jax`` the other way); it is recorded, and a run
  is resumed only with the same choice;
* ``compare_frameworks.py --paired`` pairs the runs by seed and reports the
  differences, their interval and the equivalence test (checked against
  scipy), trains pairs with ``--train``, and refuses runs that were not
  started from torch's parameters; the unpaired comparison refuses paired runs.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers.demo_data import make_idx_dir
from helpers.demo_runs import StopAfter, make_record
from scipy import stats as sps

from demos import compare_frameworks as cf
from demos import results_store as rs
from demos import runner
from demos.architectures import FASHION_MNIST
from demos.checkpoint import CheckpointDir
from demos.optim import OneCycle
from demos.train_jax import JaxTrainer
from demos.train_torch import TorchTrainer

VERSION = "vpair"


def _trainer(cls, seed=7):
    images = np.zeros((4, 28, 28, 1), np.float32)
    return cls(FASHION_MNIST, OneCycle(max_lr=0.01, total_steps=10), images, np.zeros(4, np.int64),
               seed=seed, batch_size=4)


@pytest.mark.parametrize("source,target", [(TorchTrainer, JaxTrainer), (JaxTrainer, TorchTrainer)])
def test_a_run_starts_from_the_other_frameworks_initial_parameters(source, target):
    initial = source.initial_parameters(FASHION_MNIST, 7)
    assert initial.keys() == target.initial_parameters(FASHION_MNIST, 7).keys()
    trainer = _trainer(target)
    trainer.load_parameters(initial)
    own = _canonical_now(trainer)
    for name, value in initial.items():
        np.testing.assert_array_equal(own[name], value, err_msg=name)
    # A trainer built with the seed starts from its own initial_parameters, bit for bit.
    for name, value in _canonical_now(_trainer(source)).items():
        np.testing.assert_array_equal(value, initial[name], err_msg=name)


def _canonical_now(trainer) -> dict:
    if isinstance(trainer, TorchTrainer):
        from demos.train_torch import canonical_parameters

        return canonical_parameters(trainer.model)
    from demos.build_jax import parameter_layers
    from scs_jax import convert

    return {f"{i}.{k}": v for i, layer in enumerate(parameter_layers(trainer.model))
            for k, v in convert.to_numpy(layer).items()}


def test_bad_parameters_are_refused_naming_them():
    trainer = _trainer(JaxTrainer)
    initial = TorchTrainer.initial_parameters(FASHION_MNIST, 0)
    with pytest.raises(ValueError, match="parameters: expected keys"):
        trainer.load_parameters({**initial, "weight": initial["0.weight"]})
    with pytest.raises(ValueError, match=r"no parameters for layer\(s\) \[3\]"):
        trainer.load_parameters({k: v for k, v in initial.items() if not k.startswith("3.")})


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory):
    return make_idx_dir(tmp_path_factory.mktemp("idx"), n_train=40, n_test=16)


def _demo(idx_dir, results, *extra, epochs=2):
    return [VERSION, "--epochs", str(epochs), "--runs", "1", "--batch-size", "16", "--seed", "5",
            "--data-dir", str(idx_dir), "--no-checksum", "--no-progress", "--results-dir", str(results),
            *extra]


def test_init_from_is_recorded_and_a_resume_must_match(idx_dir, tmp_path, capsys, monkeypatch):
    results = tmp_path / "results"
    with monkeypatch.context() as patch:  # Ctrl-C once epoch 1's checkpoint is on disk
        patch.setattr(CheckpointDir, "save", StopAfter(0, 1, interrupt=True).method())
        assert runner.main("fashion_mnist", "jax", _demo(idx_dir, results, "--init-from", "torch")) == 0
    status = runner.main("fashion_mnist", "jax", _demo(idx_dir, results))
    err = capsys.readouterr().err
    assert status == 2 and "init_from 'torch' in the checkpoint, 'jax' now (--init-from)" in err
    assert runner.main("fashion_mnist", "jax", _demo(idx_dir, results, "--init-from", "torch")) == 0
    (path,) = (results / "fashion_mnist" / VERSION / "jax").glob("run_*.json")
    assert json.loads(path.read_text())["settings"]["init_from"] == "torch"


def test_paired_runs_start_equal_and_train_on_the_same_batches(idx_dir, tmp_path):
    """One epoch of a torch run and its JAX partner: their first losses agree to float32 rounding."""
    results = tmp_path / "results"
    assert runner.main("fashion_mnist", "torch", _demo(idx_dir, results, epochs=1)) == 0
    assert runner.main("fashion_mnist", "jax", _demo(idx_dir, results, "--init-from", "torch", epochs=1)) == 0
    runs = {r["framework"]: r for r in rs.load_runs("fashion_mnist", VERSION, None, results)}
    t, j = runs["torch"]["epochs"][0], runs["jax"]["epochs"][0]
    assert j["train_loss"] == pytest.approx(t["train_loss"], rel=1e-4)
    assert j["test_loss"] == pytest.approx(t["test_loss"], rel=1e-4)


# --- the paired comparison on generated records ----------------------------------------

TORCH = [13.10, 13.52, 14.01, 13.77, 13.40, 13.95]
JAX = [13.15, 13.49, 14.08, 13.80, 13.36, 13.99]


def _save(tmp_path, framework, errors, init_from="torch", seeds=None):
    for i, error in enumerate(errors):
        seed = i if seeds is None else seeds[i]
        rs.save_run(make_record(framework, i, error, version=VERSION, seed=seed,
                                settings={"init_from": init_from}), tmp_path)


def test_paired_report_matches_scipy(tmp_path, capsys):
    _save(tmp_path, "torch", TORCH)
    _save(tmp_path, "jax", JAX)
    assert cf.main([VERSION, "--paired", "--results-dir", str(tmp_path)]) == 0
    text = (tmp_path / "fashion_mnist" / VERSION / "comparison_paired.txt").read_text()
    assert text in capsys.readouterr().out
    d = np.subtract(JAX, TORCH)
    ci = sps.ttest_1samp(d, 0).confidence_interval(0.95)
    p = max(sps.ttest_1samp(d, -0.1, alternative="greater").pvalue,
            sps.ttest_1samp(d, 0.1, alternative="less").pvalue)
    assert f"[{ci.low:+.3f}, {ci.high:+.3f}]" in text
    assert f"p = {p:.4g}: shown at the 5 % level" in text
    assert f"mean difference (JAX - torch): {d.mean():+.3f}" in text
    assert "seed    2:  14.01   14.08  +0.07" in text
    assert (tmp_path / "fashion_mnist" / VERSION / "paired_differences.png").read_bytes()[:4] == b"\x89PNG"


def test_pairs_not_equivalent_exit_1(tmp_path, capsys):
    _save(tmp_path, "torch", TORCH)
    _save(tmp_path, "jax", [e + 0.4 for e in TORCH])
    assert cf.main([VERSION, "--paired", "--no-write", "--results-dir", str(tmp_path)]) == 1
    assert "NOT shown at the 5 % level" in capsys.readouterr().out


def test_pairing_refuses_jax_runs_from_their_own_initialisation(tmp_path, capsys):
    _save(tmp_path, "torch", TORCH)
    _save(tmp_path, "jax", JAX, init_from="jax")
    assert cf.main([VERSION, "--paired", "--results-dir", str(tmp_path)]) == 2
    assert "started from jax's initial parameters" in capsys.readouterr().err


def test_unpaired_comparison_refuses_paired_runs(tmp_path, capsys):
    _save(tmp_path, "torch", TORCH)
    _save(tmp_path, "jax", JAX, init_from="torch")
    assert cf.main([VERSION, "--results-dir", str(tmp_path)]) == 2
    assert "compare such runs with --paired" in capsys.readouterr().err


def test_unmatched_seeds_are_left_out_and_too_few_pairs_refused(tmp_path, capsys):
    _save(tmp_path, "torch", TORCH[:3])
    _save(tmp_path, "jax", JAX[:3], seeds=[2, 3, 4])
    assert cf.main([VERSION, "--paired", "--results-dir", str(tmp_path)]) == 2
    assert "need at least 2 seeds with both" in capsys.readouterr().err


def test_paired_train_passes_init_from_torch_to_the_jax_demo_only(tmp_path):
    calls = []

    def fake_demo(dataset, framework, argv):
        calls.append((framework, argv))
        errors = TORCH if framework == "torch" else JAX
        _save(tmp_path, framework, errors[:2])
        return 0

    cf.main([VERSION, "--paired", "--train", "2", "--no-write", "--results-dir", str(tmp_path)],
            train_demo=fake_demo)
    (fw_t, argv_t), (fw_j, argv_j) = calls
    assert fw_t == "torch" and "--init-from" not in argv_t
    assert fw_j == "jax" and argv_j[-2:] == ["--init-from", "torch"]

"""The JAX epoch scan computes what the step loop computes.

:meth:`demos.train_jax.JaxTrainer.train_steps` runs a chunk of training steps
as one ``lax.scan`` (the demos' default) and :meth:`~demos.train_jax.JaxTrainer.evaluate`
the test set as another; ``--step-loop`` calls one jitted step per batch as
before. Setting: the trajectory tests' (500 Fashion-MNIST images, batch 32,
16 steps an epoch with a partial last batch, padded and masked), two epochs,
chunks of 5 steps (16 = 5 + 5 + 5 + 1: the last chunk padded with skipped steps).

* float64: every step's loss, both evaluations and the final parameters agree
  to relative 1e-12, with and without augmentation (measured: 2e-16 in the
  losses, 2e-15 in the parameters).
* float32: the step loop and the scan are the same XLA computation compiled
  in two places, and XLA:CPU compiles the convolutions' gradients inside the
  loop body with another summation order: one step's gradients differ by
  ~1e-6 (relative L2; d/dq, a sum that cancels, 6e-5), float32 rounding of
  sums of ~2e4 terms, and Adam's first steps amplify such differences
  (``test_trajectories.py`` explains how). The forward pass is the same:
  the first step's loss is bit-equal. Measured with
  ``parity_tests/measure_scan_float32.py`` (seeds 0-11, this setting, suite's
  XLA -O0, 2-core EPYC): every step's loss within 1.5e-5 (median of the
  seeds' worst 2.3e-7), final parameters' relative L2 within 1.1e-5 (median
  5.5e-7). Tolerances: 5x the worst seed, as the trajectory tests set theirs.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers.demo_trajectories import l2_relative_error, load_train_subset
from helpers.parity import jax_precision, relative_error
from helpers.scan_runs import scan_and_loop

FLOAT64_RTOL = 1e-12
SCAN_FLOAT32_LOSS_RTOL = 7.5e-5   # every step's loss (worst measured 1.5e-5)
SCAN_FLOAT32_PARAM_RTOL = 5.5e-5  # final parameters, relative L2 of each tensor (worst 1.1e-5)


@pytest.fixture(scope="module")
def subset():
    images, labels, _ = load_train_subset()
    return images, labels


@pytest.mark.parametrize("augment", [False, True], ids=["plain", "augmented"])
def test_float64_scan_equals_step_loop(subset, augment):
    with jax_precision("float64"):
        runs = scan_and_loop(*subset, seed=0, dtype="float64", augment=augment)
    (loop_losses, loop_evals, loop_params), (scan_losses, scan_evals, scan_params) = runs["loop"], runs["scan"]
    assert len(loop_losses) == 32 and loop_losses[-1] < 0.9 * loop_losses[0]
    errors = np.abs(scan_losses - loop_losses) / np.abs(loop_losses)
    assert errors.max() <= FLOAT64_RTOL, f"step {errors.argmax()}: {errors.max():.2e}"
    for (loss_a, acc_a), (loss_b, acc_b) in zip(scan_evals, loop_evals):
        assert abs(loss_a - loss_b) <= FLOAT64_RTOL * abs(loss_b) and acc_a == acc_b
    for name, expected in loop_params.items():
        assert scan_params[name].dtype == np.float64
        assert relative_error(scan_params[name], expected) <= FLOAT64_RTOL, name


def test_float32_scan_differs_from_step_loop_by_rounding_only(subset):
    runs = scan_and_loop(*subset, seed=0, dtype="float32")
    (loop_losses, loop_evals, loop_params), (scan_losses, scan_evals, scan_params) = runs["loop"], runs["scan"]
    errors = np.abs(scan_losses - loop_losses) / np.abs(loop_losses)
    l2 = {name: l2_relative_error(scan_params[name], expected) for name, expected in loop_params.items()}
    print(f"\nfloat32 scan vs step loop: step-0 loss {errors[0]:.1e}, every step's loss max {errors.max():.2e}, "
          f"params rel. L2 max {max(l2.values()):.2e} ({max(l2, key=l2.get)})")
    assert scan_losses[0] == loop_losses[0], "the first step's forward pass differs"
    assert errors.max() <= SCAN_FLOAT32_LOSS_RTOL, f"step {errors.argmax()}: {errors.max():.2e}"
    for name, err in l2.items():
        assert scan_params[name].dtype == np.float32 and err <= SCAN_FLOAT32_PARAM_RTOL, (name, err)
    assert [acc for _, acc in scan_evals] == [acc for _, acc in loop_evals]

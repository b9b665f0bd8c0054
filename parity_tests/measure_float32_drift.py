#!/usr/bin/env python
"""Measure the float32 trajectory drift behind test_trajectories.py's FLOAT32_* tolerances.

For each seed (init and batch plan) it runs the test's setting for 20 steps
and prints, JAX float32 vs torch float32 and torch float32 vs torch float64
(same start): the first step's loss, the worst step's loss, the worst
tensor's relative L2 error and max-norm error of the final parameters
(relative errors). Not collected by pytest (no ``test_`` prefix)::

    python parity_tests/measure_float32_drift.py --seeds 64
    PARITY_XLA_DEFAULT_OPT=1 python parity_tests/measure_float32_drift.py   # XLA's own -O level

The numbers in test_trajectories.py were measured with
``PARITY_XLA_DEFAULT_OPT=1`` (5x faster on a loaded 2-core machine); the
suite's LLVM -O0 gives the same picture (seed 0: 3.6e-6 vs 3.0e-6 in the loss).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import conftest  # noqa: E402, F401  (the suite's XLA flags, precision pins, torch threads)
import numpy as np  # noqa: E402
import torch  # noqa: E402
from helpers import demo_trajectories as T  # noqa: E402
from helpers.parity import relative_error  # noqa: E402

from demos.architectures import FASHION_MNIST  # noqa: E402
from demos.optim import OneCycle  # noqa: E402
from demos.train_jax import JaxTrainer  # noqa: E402
from demos.train_torch import TorchTrainer  # noqa: E402

KEYS = ("step0", "loss", "l2", "max")


def compare(expected_params, actual_params, expected_losses, actual_losses) -> dict:
    losses = np.abs(actual_losses - expected_losses) / np.abs(expected_losses)
    return {
        "step0": float(losses[0]),
        "loss": float(losses.max()),
        "l2": max(T.l2_relative_error(actual_params[k], v) for k, v in expected_params.items()),
        "max": max(relative_error(actual_params[k], v) for k, v in expected_params.items()),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=64, help="seeds 0..N-1 (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=20, help="steps per run (default: %(default)s)")
    args = parser.parse_args(argv)

    images, labels, source = T.load_train_subset()
    print(f"{source} images: {len(labels)}, batch {T.BATCH}, {args.steps} steps", flush=True)
    schedule = OneCycle(max_lr=T.MAX_LR, total_steps=args.steps)
    # One JaxTrainer (one compile); each seed restarts it from torch's parameters.
    jax_trainer = JaxTrainer(FASHION_MNIST, schedule, images, labels, seed=0, dtype="float32",
                             batch_size=T.BATCH)
    rows = {"jax32~torch32": [], "torch32~torch64": []}
    for seed in range(args.seeds):
        batches = T.plan_batches(len(labels), args.steps, seed)
        t32 = TorchTrainer(FASHION_MNIST, schedule, images, labels, seed=seed, dtype="float32",
                           batch_size=T.BATCH)
        t64 = TorchTrainer(FASHION_MNIST, schedule, images, labels, seed=seed, dtype="float64",
                           batch_size=T.BATCH)
        with torch.no_grad():
            for p64, p32 in zip(t64.model.parameters(), t32.model.parameters()):
                p64.copy_(p32.double())
        T.start_from_torch_params(jax_trainer, t32)
        jax_trainer.opt_state = jax_trainer.tx.init(jax_trainer.params)
        l32 = np.array([t32.train_step(b)[0] for b in batches])
        lj = np.array([jax_trainer.train_step(b)[0] for b in batches])
        l64 = np.array([t64.train_step(b)[0] for b in batches])
        p32, pj, p64 = (T.canonical_torch(t32.model), T.canonical_jax(jax_trainer.model),
                        T.canonical_torch(t64.model))
        a, b = compare(p32, pj, l32, lj), compare(p64, p32, l64, l32)
        rows["jax32~torch32"].append(a)
        rows["torch32~torch64"].append(b)
        print(f"seed {seed:3d}  jax32~torch32 " + " ".join(f"{k} {a[k]:.1e}" for k in KEYS)
              + "  | torch32~torch64 " + " ".join(f"{k} {b[k]:.1e}" for k in KEYS), flush=True)
    for name, values in rows.items():
        print(name)
        for k in KEYS:
            column = [v[k] for v in values]
            worst = int(np.argmax(column))
            print(f"  {k:5s} worst {column[worst]:.1e} (seed {worst})  median {statistics.median(column):.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

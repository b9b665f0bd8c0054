#!/usr/bin/env python
"""Measure the float32 difference between the JAX epoch scan and the step loop (test_epoch_scan.py).

For each seed it trains the test's setting both ways and prints the first
step's loss difference, the worst step's, and the worst tensor's relative L2
error of the final parameters. Not collected by pytest (no ``test_`` prefix)::

    python parity_tests/measure_scan_float32.py --seeds 12
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
from helpers.demo_trajectories import l2_relative_error, load_train_subset  # noqa: E402
from helpers.scan_runs import scan_and_loop  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=12)
    args = parser.parse_args(argv)
    images, labels, source = load_train_subset()
    worst = {"step0": [], "loss": [], "l2": []}
    for seed in range(args.seeds):
        runs = scan_and_loop(images, labels, seed, "float32")
        (loop_losses, _, loop_params), (scan_losses, _, scan_params) = runs["loop"], runs["scan"]
        errors = np.abs(scan_losses - loop_losses) / np.abs(loop_losses)
        l2 = max(l2_relative_error(scan_params[k], v) for k, v in loop_params.items())
        for key, value in zip(worst, (errors[0], errors.max(), l2)):
            worst[key].append(float(value))
        print(f"seed {seed:3d}: step-0 loss {errors[0]:.1e}, every step's loss {errors.max():.2e}, "
              f"params rel. L2 {l2:.2e}", flush=True)
    print(f"{source} images, {args.seeds} seeds: " + ", ".join(
        f"{key} worst {max(v):.2e} median {statistics.median(v):.2e}" for key, v in worst.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

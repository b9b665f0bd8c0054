#!/usr/bin/env python
"""Measure each framework's float32 accuracy against float64 over the property space.

For every float32 draw of the property tests (``test_properties.test_scs_parity``'s
structures, adversarial inputs, drawn p, q and zero kernels; and the fused
layer-and-pool draws of ``test_fused_pool``), it computes the output and the
gradients of the input and every parameter with torch (oneDNN), torch with
its own convolution kernels, and JAX, all in float32, and compares each to
the float64 torch computation on the same float32 numbers (relative error
``max|a - e| / max|e|``, as the tests). It prints, per quantity, the worst and
median error of each implementation, the worst and median ratio JAX / torch
per draw, and writes the table as Markdown. Not collected by pytest::

    python parity_tests/measure_float32_accuracy.py --draws 1000 --out results/accuracy/float32_accuracy.md
    PARITY_XLA_DEFAULT_OPT=1 python parity_tests/measure_float32_accuracy.py   # XLA's own -O level

Draws come from hypothesis with a fixed seed (``--seed``), so a table can be
reproduced.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import conftest  # noqa: E402, F401  (the suite's XLA flags, precision pins, torch threads)
import jax  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from helpers.draws import STRUCTURES, drawn_torch_layer, scs_draws  # noqa: E402
from helpers.parity import (  # noqa: E402
    finite_error,
    flush_subnormals,
    float64_twin_run,
    jax_scs_run,
    jax_twin,
    output_shape,
    torch_native_convolutions,
    torch_scs_run,
)
from hypothesis import HealthCheck, Phase, assume, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

QUANTITIES = ("out", "x", "weight", "p", "q")
NAMES = {"out": "output", "x": "d/dx", "weight": "d/dweight", "p": "d/dp", "q": "d/dq"}
IMPLEMENTATIONS = ("torch", "torch native conv", "JAX")
POOLS = [None, None, (2, 2, True), (2, 2, False), (3, 2, True), (2, 1, False)]


def errors_of(case, pool) -> dict:
    """``{implementation: {quantity: relative error vs float64}}`` for one float32 draw."""
    layer = drawn_torch_layer(case)
    g = np.random.default_rng(case.g_seed).standard_normal(output_shape(layer, case.x.shape, pool))
    truth = flush_subnormals(float64_twin_run(layer, case.x, g, pool), "float32")
    results = {"torch": torch_scs_run(layer, case.x, g, pool)}
    with torch_native_convolutions():
        results["torch native conv"] = torch_scs_run(layer, case.x, g, pool)
    results["JAX"] = jax_scs_run(jax_twin(layer, "float32"), case.x, g, pool)
    return {
        name: {q: finite_error(flush_subnormals(r, "float32")[q], truth[q]) for q in QUANTITIES}
        for name, r in results.items()
    }


def fits(case, pool) -> bool:
    """Whether ``pool`` fits the layer's output (at least the pool's window in each axis)."""
    if pool is None:
        return True
    n, c, h, w = output_shape(drawn_torch_layer(case), case.x.shape)
    k = pool[0] if isinstance(pool[0], tuple) else (pool[0], pool[0])
    return h >= k[0] and w >= k[1]


def collect(draws: int, seed_value: int) -> list[dict]:
    rows = []

    @seed(seed_value)
    @settings(max_examples=draws, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=scs_draws(st.sampled_from(STRUCTURES)), pool=st.sampled_from(POOLS))
    def record(case, pool):
        assume(case.dtype == "float32")
        pool = pool if fits(case, pool) else None
        errors = errors_of(case, pool)
        rows.append({"structure": case.structure, "pool": pool, "errors": errors})
        if len(rows) % 50 == 0:
            print(f"{len(rows)} draws", flush=True)

    record()
    return rows


#: An error above this means float32 did not represent the value at all (the
#: inputs near 1e30 overflow the squared norms: both frameworks return 0).
OUT_OF_RANGE = 1e-2


def in_range(rows: list[dict]) -> list[dict]:
    """The draws float32 can represent: every implementation within :data:`OUT_OF_RANGE`."""
    return [r for r in rows if all(e <= OUT_OF_RANGE for n in IMPLEMENTATIONS for e in r["errors"][n].values())]


def table(rows: list[dict]) -> list[str]:
    """Per quantity: worst, 99th percentile and median error of each implementation, JAX / torch ratios."""
    lines = [
        "| quantity | torch worst | torch 99 % | torch median | torch native worst | torch native 99 % "
        "| torch native median | JAX worst | JAX 99 % | JAX median | JAX / torch: worst | 99 % | median |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for q in QUANTITIES:
        per = {name: [r["errors"][name][q] for r in rows] for name in IMPLEMENTATIONS}
        cells = []
        stats = {name: (max(v), float(np.quantile(v, 0.99)), statistics.median(v)) for name, v in per.items()}
        for name in IMPLEMENTATIONS:
            cells += [f"{value:.2e}" for value in stats[name]]
        cells += [f"{j / t:.2f}" for j, t in zip(stats["JAX"], stats["torch"])]
        lines.append(f"| {NAMES[q]} | " + " | ".join(cells) + " |")
    return lines


def largest_ratios(rows: list[dict], count: int = 5) -> list[str]:
    """The draws where JAX's error is largest relative to torch's (errors above 1e-6 only)."""
    def ratio(row):
        e = row["errors"]
        return max((e["JAX"][q] / max(e["torch"][q], 1e-12) for q in QUANTITIES if e["JAX"][q] > 1e-6), default=0)

    lines = []
    for row in sorted(rows, key=ratio, reverse=True)[:count]:
        cells = "; ".join(f"{n}: " + " ".join(f"{NAMES[q]} {e:.1e}" for q, e in row["errors"][n].items())
                          for n in IMPLEMENTATIONS)
        lines.append(f"- {row['structure']} pool {row['pool']}, ratio {ratio(row):.1f}: {cells}")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=1000, help="hypothesis draws (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed (default: %(default)s)")
    parser.add_argument("--out", type=Path, help="write the Markdown table here")
    args = parser.parse_args(argv)
    rows = collect(args.draws, args.seed)
    head = [
        f"float32 accuracy against float64 over {len(rows)} property draws (seed {args.seed}), "
        f"{dt.datetime.now().isoformat(timespec='minutes')}",
        f"torch {torch.__version__}, jax {jax.__version__}, {platform.machine()} "
        f"{platform.processor() or ''}".rstrip() + f", XLA_FLAGS={conftest.os.environ.get('XLA_FLAGS', '')!r}",
        "",
    ]
    kept = in_range(rows)
    lines = head + [f"{len(rows) - len(kept)} draws left out: float32 out of range (inputs near 1e30; "
                    f"every implementation more than {OUT_OF_RANGE:.0e} off, see test_properties.py)", ""]
    lines += table(kept) + ["", "Draws with the largest JAX / torch error ratio:", ""] + largest_ratios(kept)
    print("\n".join(lines))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

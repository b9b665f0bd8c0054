"""The paired comparison of the frameworks: the same seed, the same initial weights, the same batches.

For each seed, a torch run and a JAX run started from the torch run's
initial parameters (the JAX demo's ``--init-from torch``, through the numpy
converters) and trained on the same batch plan (the plan depends on the seed
only). What remains between the two runs of a pair is the frameworks'
arithmetic, so the per-seed differences of the final test error measure how
closely JAX reproduces torch, free of the seed-to-seed spread that dominates
an unpaired comparison. :func:`compare_paired` pairs the runs by seed and
tests, with two one-sided t-tests on the differences, whether their mean
lies within ``±margin`` percentage points (:func:`demos.stats.paired`).
"""

from __future__ import annotations

import datetime as dt
import math

from .recipe import saved_setting
from .stats import paired

__all__ = ["PAIRED_MARGIN", "PairingError", "compare_paired", "format_paired_report"]

#: The equivalence margin of the paired design, in percentage points of test error.
PAIRED_MARGIN = 0.1


class PairingError(ValueError):
    """The runs cannot be paired (wrong initialisation, too few common seeds); the message says why."""


def _pairs(runs: list[dict]) -> list[tuple[dict, dict]]:
    """(torch run, JAX run) per seed both have, in seed order."""
    by_framework: dict[str, dict[int, dict]] = {"torch": {}, "jax": {}}
    for record in runs:
        framework = record["framework"]
        init = saved_setting(record, "init_from")
        if init != "torch":
            raise PairingError(
                f"{framework}/run_{record['run_index']:04d} started from {init}'s initial parameters; "
                "a paired comparison needs every run started from torch's (the JAX demo's "
                "--init-from torch; compare_frameworks.py --paired --train N trains such pairs)")
        by_framework[framework][record["seed"]] = record
    seeds = sorted(set(by_framework["torch"]) & set(by_framework["jax"]))
    if len(seeds) < 2:
        raise PairingError(
            f"need at least 2 seeds with both a torch and a JAX run, found {len(seeds)} "
            f"(torch seeds {sorted(by_framework['torch'])}, JAX seeds {sorted(by_framework['jax'])}); "
            "add pairs with --paired --train N")
    return [(by_framework["torch"][s], by_framework["jax"][s]) for s in seeds]


def compare_paired(runs: list[dict], margin: float = PAIRED_MARGIN) -> dict:
    """Pair ``runs`` (one dataset and version) by seed and compare their final test errors.

    Returns:
        ``{"seeds", "torch_errors", "jax_errors", "result": PairedResult (JAX − torch),
        "unpaired_seeds"}``; ``unpaired_seeds`` lists runs without a partner.

    Raises:
        PairingError: a run not started from torch's parameters, fewer than two
            pairs, or a final test error that is not finite.
    """
    pairs = _pairs(runs)
    torch_errors = [float(t["epochs"][-1]["test_error"]) for t, _ in pairs]
    jax_errors = [float(j["epochs"][-1]["test_error"]) for _, j in pairs]
    if not all(map(math.isfinite, torch_errors + jax_errors)):
        raise PairingError("a paired run's final test error is not finite")
    seeds = [t["seed"] for t, _ in pairs]
    paired_seeds = set(seeds)
    return {
        "seeds": seeds,
        "torch_errors": torch_errors,
        "jax_errors": jax_errors,
        "result": paired(torch_errors, jax_errors, margin),
        "unpaired_seeds": sorted({r["seed"] for r in runs} - paired_seeds),
    }


def format_paired_report(dataset: str, version: str, comparison: dict, settings_line: str) -> str:
    """The paired comparison as text (what ``comparison_paired.txt`` holds)."""
    result = comparison["result"]
    lines = [
        f"torch vs JAX, paired by seed: {dataset} / {version}",
        f"written {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')} "
        "by demos/compare_frameworks.py --paired",
        settings_line,
        "design: per seed, a torch run and a JAX run started from the torch run's initial "
        "parameters, trained on the same batches",
        "",
        "final test error (%) per seed: torch, JAX, JAX - torch",
    ]
    for seed, t, j, d in zip(comparison["seeds"], comparison["torch_errors"],
                             comparison["jax_errors"], result.differences):
        lines.append(f"  seed {seed:4d}: {t:6.2f}  {j:6.2f}  {d:+.2f}")
    if comparison["unpaired_seeds"]:
        lines.append(f"  (runs without a partner, left out: seeds {comparison['unpaired_seeds']})")
    n = len(result.differences)
    level = 100 * result.interval.level
    lines += [
        "",
        f"pairs: {n}",
        f"mean difference (JAX - torch): {result.mean:+.3f} percentage points, "
        f"standard deviation {result.std:.3f}, standard error {result.std / math.sqrt(n):.3f}",
        f"{level:.0f} % confidence interval of the mean difference: "
        f"[{result.interval.low:+.3f}, {result.interval.high:+.3f}]",
        f"paired t-test of no difference: p = {result.t_p:.4g}",
        f"correlation of the paired errors: {result.correlation:.3f}",
        f"equivalence within ±{result.margin} points (two one-sided t-tests): p = "
        f"{result.equivalence_p:.4g}: "
        + ("shown at the 5 % level" if result.equivalence_p < 0.05 else "NOT shown at the 5 % level"),
    ]
    return "\n".join(lines) + "\n"

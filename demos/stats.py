"""Statistics of the runs' final test errors: summaries, Welch's t-test, the two-standard-error check,
confidence intervals and equivalence tests (unpaired and paired).

One module for every reader of the results: the demos (the earlier runs'
mean), ``show_results.py`` and ``compare_frameworks.py``. Welch's test is
scipy's ``ttest_ind(equal_var=False)``, imported only when a test is asked
for, so that reading results stays light.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

__all__ = ["summarize", "WelchTest", "welch", "two_se_check", "format_number", "Interval",
           "welch_interval", "equivalence_welch", "paired", "PairedResult", "equivalence_runs"]


def summarize(runs: list[dict]) -> dict:
    """Statistics of the final-epoch test error (%) per dataset and framework.

    Args:
        runs: records of a single version, e.g. from :func:`demos.results_store.load_runs`.

    Returns:
        ``{(dataset, framework): stats}``, with the keys in first-seen order
        and ``stats`` a dict with

        * ``n``: number of runs,
        * ``mean``: mean final test error in %,
        * ``std``: sample standard deviation (ddof=1; NaN if n < 2),
        * ``stderr``: standard error of the mean, ``std / sqrt(n)`` (NaN if
          n < 2),
        * ``min`` / ``max``: smallest / largest final test error,
        * ``final_errors``: the final test errors, in the order of ``runs``,
        * ``run_indices``: the matching run indices,
        * ``epochs``: the number of epochs of each run.

        A NaN final error (a diverged run) makes mean/std NaN.

    Raises:
        ValueError: the runs mix several versions (the keys would merge
            them), or a record has no epochs.
    """
    versions = sorted({str(r.get("version")) for r in runs})
    if len(versions) > 1:
        raise ValueError(
            f"summarize() got runs of several versions ({', '.join(versions)});"
            " summarize one version at a time")
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in runs:
        if not r.get("epochs"):
            raise ValueError(
                f"run {r.get('dataset')}/{r.get('version')}/"
                f"{r.get('framework')}/{r.get('run_index')} has no epochs")
        groups.setdefault((r["dataset"], r["framework"]), []).append(r)
    return {key: _final_error_stats(group) for key, group in groups.items()}


def _final_error_stats(group: list[dict]) -> dict:
    errors = [float(r["epochs"][-1]["test_error"]) for r in group]
    n = len(errors)
    mean = math.fsum(errors) / n
    if n >= 2:
        std = math.sqrt(math.fsum((e - mean) ** 2 for e in errors) / (n - 1))
        stderr = std / math.sqrt(n)
    else:
        std = stderr = math.nan
    return {
        "n": n,
        "mean": mean,
        "std": std,
        "stderr": stderr,
        "min": min(errors),
        "max": max(errors),
        "final_errors": errors,
        "run_indices": [r["run_index"] for r in group],
        "epochs": [len(r["epochs"]) for r in group],
    }


class WelchTest(NamedTuple):
    """Welch's unequal-variances t-test of two samples: statistic, two-sided p-value, degrees of freedom."""

    t: float
    p: float
    df: float


def welch(a: Sequence[float], b: Sequence[float]) -> WelchTest:
    """Welch's t-test of ``a`` against ``b`` (``scipy.stats.ttest_ind(equal_var=False)``).

    ``p`` is NaN when neither sample has any spread.

    Raises:
        ImportError: scipy is not installed.
    """
    from scipy import stats as sps

    result = sps.ttest_ind(a, b, equal_var=False)
    return WelchTest(float(result.statistic), float(result.pvalue),
                     float(getattr(result, "df", math.nan)))


def two_se_check(a: dict, b: dict) -> tuple[float, float, bool]:
    """Do two means lie within two combined standard errors of each other?

    Args:
        a, b: :func:`summarize` stats (``mean``, ``stderr``) of two groups.

    Returns:
        ``(a mean - b mean, combined standard error sqrt(se_a² + se_b²), |difference| <= 2 x combined)``.
    """
    difference = a["mean"] - b["mean"]
    combined = math.sqrt(a["stderr"] ** 2 + b["stderr"] ** 2)
    return difference, combined, abs(difference) <= 2 * combined


def format_number(x: float | None, digits: int = 3) -> str:
    """``x`` with ``digits`` decimals, or ``"n/a"`` for a missing or NaN value."""
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


class Interval(NamedTuple):
    """A confidence interval ``[low, high]`` at ``level`` (e.g. 0.9)."""

    low: float
    high: float
    level: float


def welch_interval(a: Sequence[float], b: Sequence[float], level: float = 0.9) -> Interval:
    """Confidence interval of ``mean(a) - mean(b)`` with Welch's degrees of freedom (scipy)."""
    from scipy import stats as sps

    ci = sps.ttest_ind(a, b, equal_var=False).confidence_interval(level)
    return Interval(float(ci.low), float(ci.high), level)


def equivalence_welch(a: Sequence[float], b: Sequence[float], margin: float) -> float:
    """p-value of two one-sided Welch tests (TOST) that ``|mean(a) - mean(b)| < margin``.

    The larger of the p-values of ``mean(a) - mean(b) > -margin`` and
    ``< margin``; below 0.05 the means are shown equivalent within ``margin``
    at the 5 % level (the 90 % interval lies inside ``±margin``).
    """
    from scipy import stats as sps

    shifted_up = [x + margin for x in a]
    shifted_down = [x - margin for x in a]
    lower = sps.ttest_ind(shifted_up, b, equal_var=False, alternative="greater").pvalue
    upper = sps.ttest_ind(shifted_down, b, equal_var=False, alternative="less").pvalue
    return float(max(lower, upper))


class PairedResult(NamedTuple):
    """Per-pair differences ``b - a`` and what they show (see :func:`paired`)."""

    differences: list[float]
    mean: float
    std: float
    interval: Interval
    t_p: float
    equivalence_p: float
    margin: float
    correlation: float


def paired(a: Sequence[float], b: Sequence[float], margin: float, level: float = 0.95) -> PairedResult:
    """Paired comparison of ``b`` against ``a`` (same order: pair ``i`` is ``(a[i], b[i])``).

    Returns the differences ``b[i] - a[i]``, their mean and standard deviation,
    the ``level`` confidence interval of the mean difference (t, n - 1), the
    two-sided paired t-test's p-value, the p-value of the equivalence test
    within ``±margin`` (two one-sided t-tests on the differences) and the
    correlation of ``a`` with ``b`` (how much the pairing removes).

    Raises:
        ValueError: fewer than two pairs or samples of different lengths.
    """
    from scipy import stats as sps

    if len(a) != len(b) or len(a) < 2:
        raise ValueError(f"paired: expected two samples of the same length >= 2, got {len(a)} and {len(b)}")
    d = [float(y) - float(x) for x, y in zip(a, b)]
    test = sps.ttest_1samp(d, 0.0)
    ci = test.confidence_interval(level)
    lower = sps.ttest_1samp(d, -margin, alternative="greater").pvalue
    upper = sps.ttest_1samp(d, margin, alternative="less").pvalue
    mean = math.fsum(d) / len(d)
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in d) / (len(d) - 1))
    correlation = float(sps.pearsonr(a, b).statistic) if len(a) > 2 else math.nan
    return PairedResult(d, mean, std, Interval(float(ci.low), float(ci.high), level), float(test.pvalue),
                        float(max(lower, upper)), margin, correlation)


def equivalence_runs(std: float, margin: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Runs per framework for an unpaired equivalence test within ``±margin`` to succeed with ``power``.

    The normal approximation for two groups of standard deviation ``std`` whose
    true means are equal: ``n = 2 std² (z_{1-alpha} + z_{1-(1-power)/2})² / margin²``,
    rounded up (Chow, Shao & Wang, *Sample Size Calculations in Clinical
    Research*, 2nd ed., §3.2).
    """
    from scipy.stats import norm

    z = norm.ppf(1 - alpha) + norm.ppf(1 - (1 - power) / 2)
    return math.ceil(2 * std**2 * z**2 / margin**2)

"""Statistics of the runs' final test errors: summaries, Welch's t-test, the two-standard-error check.

One module for every reader of the results: the demos (the earlier runs'
mean), ``show_results.py`` and ``compare_frameworks.py``. Welch's test is
scipy's ``ttest_ind(equal_var=False)``, imported only when a test is asked
for, so that reading results stays light.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

__all__ = ["summarize", "WelchTest", "welch", "two_se_check", "format_number"]


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

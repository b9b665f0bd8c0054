"""The plots of ``compare_frameworks.py``: both frameworks' final errors, and paired differences.

matplotlib is imported only when a plot is drawn; the figures are written
atomically (:func:`demos.plots.save_figure`).
"""

from __future__ import annotations

from pathlib import Path

from .plots import save_figure
from .stats import PairedResult
from .trainers import FRAMEWORKS

__all__ = ["plot_error_distributions", "plot_paired_differences"]


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_error_distributions(errors: dict[str, list[float]], title: str, path: Path) -> Path:
    """Each framework's final test errors (%): every run as a dot, with a box of their quartiles.

    Args:
        errors: ``{framework: final test errors}``.
        title: the figure's title.
        path: the PNG to write (its folder is created).
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    names = [fw for fw in FRAMEWORKS if fw in errors]
    data = [errors[fw] for fw in names]
    ax.boxplot(data, tick_labels=[f"{fw} ({len(e)} runs)" for fw, e in zip(names, data)], widths=0.45,
               showfliers=False)
    for i, values in enumerate(data, start=1):
        jitter = [i + 0.18 * ((k * 0.618) % 1 - 0.5) for k in range(len(values))]
        ax.plot(jitter, values, "o", markersize=4, alpha=0.7)
        ax.plot([i - 0.3, i + 0.3], [sum(values) / len(values)] * 2, color="black", linewidth=1.2)
    ax.set_ylabel("final test error (%)")
    ax.set_title(title, fontsize="medium")
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return path


def plot_paired_differences(result: PairedResult, seeds: list[int], title: str, path: Path) -> Path:
    """Per seed, JAX's final test error minus torch's; their mean, its interval and the margin.

    Args:
        result: :func:`demos.stats.paired` of torch's and JAX's errors (JAX − torch).
        seeds: the pairs' seeds, in the order of ``result.differences``.
        title: the figure's title.
        path: the PNG to write (its folder is created).
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.axhline(0.0, color="black", linewidth=0.8)
    for bound in (-result.margin, result.margin):
        ax.axhline(bound, color="tab:red", linewidth=0.8, linestyle="--")
    ax.plot(seeds, result.differences, "o", markersize=5, label="JAX − torch, one seed")
    ax.axhline(result.mean, color="tab:blue", linewidth=1.2,
               label=f"mean {result.mean:+.3f} pt, {100 * result.interval.level:.0f} % interval")
    ax.axhspan(result.interval.low, result.interval.high, color="tab:blue", alpha=0.15)
    ax.set_xlabel("seed")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel("final test error difference (percentage points)")
    ax.set_title(title + f"\n(dashed: equivalence margin ±{result.margin} pt)", fontsize="medium")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return path

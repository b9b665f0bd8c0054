"""The plots of ``show_results.py``: every run's test error per epoch, full and zoomed.

One line per run, coloured per series (framework, plus dataset / version when
several are overlaid; versions also differ in line style), with a legend
entry per series. matplotlib is imported only when a plot is drawn.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

from . import atomic, registry
from .trainers import FRAMEWORKS

__all__ = ["make_plots", "save_figure"]

_STYLES = ["-", "--", ":", "-."]


def _key(run: dict) -> tuple[str, str, str]:
    return run["dataset"], run["version"], run["framework"]


def _finite(values):
    return [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]


def _tail_start(last_epoch: int) -> int:
    """First epoch of a run's last ~20% (the zoomed plot's range)."""
    return max(1, math.floor(0.8 * last_epoch)) if last_epoch >= 5 else 1


class _Series:
    """The runs' series (dataset, version, framework) in drawing order, with label and style."""

    def __init__(self, runs: list[dict], versions: list[str], colors):
        datasets = registry.names()
        self.datasets = sorted({r["dataset"] for r in runs}, key=datasets.index)
        self.versions = versions
        keys = list(dict.fromkeys(_key(r) for r in runs))
        keys.sort(key=lambda k: (datasets.index(k[0]), versions.index(k[1]), FRAMEWORKS.index(k[2])))
        self.keys = keys
        self.counts = {k: sum(_key(r) == k for r in runs) for k in keys}
        self.style = {k: dict(color=colors[i % len(colors)],
                              linestyle=_STYLES[versions.index(k[1]) % len(_STYLES)])
                      for i, k in enumerate(keys)}

    def label(self, key) -> str:
        ds, v, fw = key
        parts = [fw]
        if len(self.datasets) > 1:
            parts.append(registry.get(ds).title)
        if len(self.versions) > 1:
            parts.append(v)
        n = self.counts[key]
        return f"{' '.join(parts)} ({n} run{'s' if n != 1 else ''})"

    def title(self) -> str:
        return (", ".join(registry.get(d).title for d in self.datasets)
                + " " + ", ".join(self.versions))


def make_plots(runs: list[dict], versions: list[str], plot_dir: Path) -> tuple[Path, Path]:
    """Draw every run's test error per epoch, full and zoomed, as two PNGs.

    Args:
        runs: the records to draw (may mix datasets and versions).
        versions: the requested versions, in order; they name the files.
        plot_dir: folder for the PNGs (created if needed).

    Returns:
        ``(path of results_<V...>.png, path of results_detail_<V...>.png)``.

    Raises:
        ImportError: matplotlib is not installed.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = _Series(runs, versions, plt.get_cmap("tab10").colors)
    name = "_".join(versions)
    paths = (plot_dir / f"results_{name}.png",
             plot_dir / f"results_detail_{name}.png")
    for detail, path in zip((False, True), paths):
        fig, ax = plt.subplots(figsize=(9, 5.5))
        window = _draw_runs(ax, runs, series, detail)
        if detail:
            _zoom(ax, runs, series, window)
        else:
            ys = _finite([e["test_error"] for r in runs for e in r["epochs"]])
            if ys:
                ax.set_ylim(min(0.0, min(ys)), max(ys) * 1.05 + 1e-9)
            ax.set_xlim(1, max(max(r["epochs"][-1]["epoch"] for r in runs), 2))
            ax.set_title(f"{series.title()}: test error per epoch, every run")
        ax.set_xlabel("epoch")
        ax.set_ylabel("test error (%)")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper right", fontsize="small")
        fig.tight_layout()
        save_figure(fig, path)
        plt.close(fig)
    return paths


def _draw_runs(ax, runs: list[dict], series: _Series, detail: bool) -> list[float]:
    """One line per run (a dot on its final error when ``detail``); returns the errors in
    each run's last ~20%."""
    labelled = set()
    window = []
    for r in sorted(runs, key=lambda r: series.keys.index(_key(r))):
        key = _key(r)
        xs = [e["epoch"] for e in r["epochs"]]
        ys = [e["test_error"] for e in r["epochs"]]
        ax.plot(xs, ys, linewidth=0.9, alpha=0.75,
                label=None if key in labelled else series.label(key), **series.style[key])
        labelled.add(key)
        window += [y for x, y in zip(xs, ys) if x >= _tail_start(xs[-1])]
        if detail:
            ax.plot(xs[-1:], ys[-1:], marker="o", markersize=3, color=series.style[key]["color"])
    return window


def _zoom(ax, runs: list[dict], series: _Series, window: list[float]) -> None:
    """The detail plot: the last ~20% of every run, so that runs of different lengths
    (overlaid versions) all have their final errors in view, and each series' mean."""
    for key in series.keys:
        finals = _finite([r["epochs"][-1]["test_error"] for r in runs if _key(r) == key])
        if finals:
            mean = sum(finals) / len(finals)
            ax.axhline(mean, color=series.style[key]["color"], linewidth=0.8,
                       linestyle=(0, (4, 3)), alpha=0.9)
    start = min(_tail_start(r["epochs"][-1]["epoch"]) for r in runs)
    max_epoch = max(r["epochs"][-1]["epoch"] for r in runs)
    ax.set_xlim(start, max_epoch + max(0.5, 0.01 * max_epoch))
    ys = _finite(window)
    if ys:
        lo, hi = min(ys), max(ys)
        pad = max(0.1 * (hi - lo), 0.05)
        ax.set_ylim(lo - pad, hi + pad)
    ax.set_title(f"{series.title()}: test error, last epochs (dashed: mean final error)")


def save_figure(fig, path: Path) -> None:
    """Write a figure as PNG via a temp file + rename (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=120)
    atomic.replace_file(path, png.getvalue())

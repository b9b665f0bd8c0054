#!/usr/bin/env python
"""Show the statistics and plots of the demos' saved training runs.

Usage (from the repository root or anywhere else)::

    python demos/show_results.py v1
    python demos/show_results.py v1 v2 --dataset cifar10 --no-plots
    python -m demos.show_results v1

For every dataset / version / framework that has runs it prints the number of
runs, the mean, standard deviation, standard error, minimum and maximum of the
final-epoch test error (%) and the number of epochs per run.  When both
frameworks have runs it also prints the difference of their means and, with at
least two runs each, the p-value of Welch's t-test.

Unless ``--no-plots`` is given it writes two PNGs to the plot folder:
``results_<V>.png`` (every run's test error per epoch) and
``results_detail_<V>.png`` (zoomed on the last epochs and the final errors);
several versions are overlaid in ``results_<V1>_<V2>.png`` /
``results_detail_<V1>_<V2>.png``.

It is safe to run while a demo is still training: runs that are being written
are invisible until complete, and corrupt or foreign files are skipped with a
warning on stderr (nothing is ever modified).

Exit status: 0 on success, 1 when a requested version has no runs (or plots
could not be made), 2 on bad arguments (e.g. an invalid version string).
"""

from __future__ import annotations

import argparse
import io
import math
import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script (python demos/show_results.py): make this checkout's
    # `demos` package importable, whatever the current folder is.
    _REPO_ROOT = str(Path(__file__).resolve().parent.parent)
    if sys.path[:1] != [_REPO_ROOT]:
        sys.path.insert(0, _REPO_ROOT)

from demos import atomic  # noqa: E402
from demos import results_store as rs  # noqa: E402
from demos.stats import format_number, summarize, welch  # noqa: E402

#: Default folder for the PNGs: ``<repo>/plots``.
PLOTS_DIR: Path = Path(__file__).resolve().parent.parent / "plots"

_DATASET_TITLES = {"fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}


# --------------------------------------------------------------------------
# Text output
# --------------------------------------------------------------------------

def _epochs_text(epochs: list[int]) -> str:
    lo, hi = min(epochs), max(epochs)
    return str(lo) if lo == hi else f"{lo}-{hi}"


def format_table(dataset: str, version: str, stats: dict,
                 results_dir: Path) -> str:
    """Format the statistics of one dataset and version as a text table.

    Args:
        dataset: dataset name.
        version: version label.
        stats: ``{framework: stats}`` with stats as from
            :func:`demos.stats.summarize`.
        results_dir: results root, shown in the heading.

    Returns:
        The table, including the framework comparison when both frameworks
        are present (no trailing newline).
    """
    header = ("framework", "runs", "epochs", "mean err %", "std", "stderr",
              "min %", "max %")
    rows = []
    for fw in rs.FRAMEWORKS:
        if fw in stats:
            s = stats[fw]
            rows.append((fw, str(s["n"]), _epochs_text(s["epochs"]),
                         *(format_number(s[k]) for k in ("mean", "std", "stderr", "min", "max"))))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))

    out = [f"== {dataset} / {version}  ({results_dir / dataset / version})",
           line(header), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    out += compare_frameworks(stats)
    return "\n".join(out)


def compare_frameworks(stats: dict) -> list[str]:
    """Lines comparing the two frameworks' final errors (empty if one lacks runs).

    Args:
        stats: ``{framework: stats}`` as in :func:`format_table`.

    Returns:
        The difference of means (first framework minus second) and, when
        both have at least two runs, Welch's t-test p-value
        (``scipy.stats.ttest_ind(equal_var=False)``).
    """
    if not all(fw in stats for fw in rs.FRAMEWORKS[:2]):
        return []
    a_name, b_name = rs.FRAMEWORKS[:2]
    a, b = stats[a_name], stats[b_name]
    diff = a["mean"] - b["mean"]
    lines = [f"difference of means ({a_name} - {b_name}): "
             f"{'n/a' if math.isnan(diff) else f'{diff:+.3f}'} percentage points"]
    if a["n"] >= 2 and b["n"] >= 2:
        try:
            res = welch(a["final_errors"], b["final_errors"])
        except ImportError:
            lines.append("Welch's t-test: scipy is not installed")
        else:
            note = ("" if not math.isnan(res.p)
                    else " (undefined: no spread in the final errors)")
            lines.append(f"Welch's t-test: t = {format_number(res.t)}, "
                         f"p = {res.p:.4g}{note}")
    else:
        lines.append(f"Welch's t-test: needs >= 2 runs per framework "
                     f"({a_name}: {a['n']}, {b_name}: {b['n']})")
    return lines


# --------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------

def _save_figure(fig, path: Path) -> None:
    """Write a figure as PNG via a temp file + rename (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=120)
    atomic.replace_file(path, png.getvalue())


def _finite(values):
    return [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]


def make_plots(runs: list[dict], versions: list[str], plot_dir: Path) -> tuple[Path, Path]:
    """Draw every run's test error per epoch, full and zoomed, as two PNGs.

    One line per run, coloured per series (framework, plus dataset / version
    when several are overlaid; versions also differ in line style), with a
    legend entry per series.

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

    datasets = sorted({r["dataset"] for r in runs},
                      key=lambda d: rs.DATASETS.index(d))
    series_keys = []
    for r in runs:
        key = (r["dataset"], r["version"], r["framework"])
        if key not in series_keys:
            series_keys.append(key)
    series_keys.sort(key=lambda k: (rs.DATASETS.index(k[0]), versions.index(k[1]),
                                    rs.FRAMEWORKS.index(k[2])))
    counts = {k: sum((r["dataset"], r["version"], r["framework"]) == k for r in runs)
              for k in series_keys}
    colors = plt.get_cmap("tab10").colors
    styles = ["-", "--", ":", "-."]

    def label(key):
        ds, v, fw = key
        parts = [fw]
        if len(datasets) > 1:
            parts.append(_DATASET_TITLES.get(ds, ds))
        if len(versions) > 1:
            parts.append(v)
        return f"{' '.join(parts)} ({counts[key]} run{'s' if counts[key] != 1 else ''})"

    style = {k: dict(color=colors[i % len(colors)],
                     linestyle=styles[versions.index(k[1]) % len(styles)])
             for i, k in enumerate(series_keys)}
    title = (", ".join(_DATASET_TITLES.get(d, d) for d in datasets)
             + " " + ", ".join(versions))
    max_epoch = max(r["epochs"][-1]["epoch"] for r in runs)

    def tail_start(last_epoch):  # first epoch of a run's last ~20%
        return max(1, math.floor(0.8 * last_epoch)) if last_epoch >= 5 else 1

    # The zoom shows the last ~20% of every run, so runs of different
    # lengths (overlaid versions) all have their final errors in view.
    start = min(tail_start(r["epochs"][-1]["epoch"]) for r in runs)
    name = "_".join(versions)
    paths = (plot_dir / f"results_{name}.png",
             plot_dir / f"results_detail_{name}.png")

    for detail, path in zip((False, True), paths):
        fig, ax = plt.subplots(figsize=(9, 5.5))
        labelled = set()
        window = []
        ordered = sorted(runs, key=lambda r: series_keys.index(
            (r["dataset"], r["version"], r["framework"])))
        for r in ordered:
            key = (r["dataset"], r["version"], r["framework"])
            xs = [e["epoch"] for e in r["epochs"]]
            ys = [e["test_error"] for e in r["epochs"]]
            ax.plot(xs, ys, linewidth=0.9, alpha=0.75,
                    label=None if key in labelled else label(key), **style[key])
            labelled.add(key)
            window += [y for x, y in zip(xs, ys) if x >= tail_start(xs[-1])]
            if detail:
                ax.plot(xs[-1:], ys[-1:], marker="o", markersize=3,
                        color=style[key]["color"])
        if detail:
            for key in series_keys:
                finals = _finite([r["epochs"][-1]["test_error"] for r in runs
                                  if (r["dataset"], r["version"], r["framework"]) == key])
                if finals:
                    mean = sum(finals) / len(finals)
                    ax.axhline(mean, color=style[key]["color"], linewidth=0.8,
                               linestyle=(0, (4, 3)), alpha=0.9)
            ax.set_xlim(start, max_epoch + max(0.5, 0.01 * max_epoch))
            ys = _finite(window)
            if ys:
                lo, hi = min(ys), max(ys)
                pad = max(0.1 * (hi - lo), 0.05)
                ax.set_ylim(lo - pad, hi + pad)
            ax.set_title(f"{title}: test error, last epochs "
                         f"(dashed: mean final error)")
        else:
            ys = _finite([e["test_error"] for r in runs for e in r["epochs"]])
            if ys:
                ax.set_ylim(min(0.0, min(ys)), max(ys) * 1.05 + 1e-9)
            ax.set_xlim(1, max(max_epoch, 2))
            ax.set_title(f"{title}: test error per epoch, every run")
        ax.set_xlabel("epoch")
        ax.set_ylabel("test error (%)")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper right", fontsize="small")
        fig.tight_layout()
        _save_figure(fig, path)
        plt.close(fig)
    return paths


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    """The command-line parser (see ``--help``)."""
    p = argparse.ArgumentParser(
        prog="show_results.py",
        description=(
            "Print statistics of the final-epoch test error of the saved "
            "demo runs (per dataset, version and framework, with Welch's "
            "t-test between torch and jax) and plot every run's test error "
            "per epoch. Reads results/<dataset>/<version>/<framework>/"
            "run_NNNN.json; safe while a demo is still writing runs."),
        epilog=("Exit status: 0 ok, 1 a version has no runs, "
                "2 bad arguments."))
    p.add_argument("versions", nargs="+", metavar="VERSION",
                   help="version label(s) used when training, e.g. v1 "
                        "(letters, digits, underscores); several are overlaid "
                        "in one plot")
    p.add_argument("--dataset", choices=rs.DATASETS, default=None,
                   help="only this dataset (default: every dataset with runs)")
    p.add_argument("--results-dir", type=Path, default=None,
                   help=f"results root (default: {rs.RESULTS_DIR})")
    p.add_argument("--plot-dir", type=Path, default=None,
                   help=f"folder for the PNG plots (default: {PLOTS_DIR}, or RESULTS_DIR/plots "
                        "with --results-dir)")
    p.add_argument("--no-plots", action="store_true",
                   help="only print the statistics, write no PNG")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the viewer.

    Args:
        argv: command-line arguments without the program name; ``None``
            means ``sys.argv[1:]``.

    Returns:
        0 on success; 1 if a requested version has no runs (a message on
        stderr names where it looked) or the plots could not be made.

    Raises:
        SystemExit: with status 2 on bad arguments (invalid version string,
            unknown option), as argparse does; with 0 for ``--help``.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    versions = list(dict.fromkeys(args.versions))  # de-duplicate, keep order
    for v in versions:
        try:
            rs.validate_version(v)
        except ValueError as exc:
            parser.error(str(exc))
    results_dir = (rs.RESULTS_DIR if args.results_dir is None
                   else args.results_dir)
    if args.plot_dir is not None:
        plot_dir = args.plot_dir
    elif args.results_dir is None:
        plot_dir = PLOTS_DIR
    else:  # results elsewhere: their plots go with them, not over the repository's
        plot_dir = Path(args.results_dir) / "plots"

    status = 0
    all_runs: list[dict] = []
    shown_versions: list[str] = []
    datasets = rs.DATASETS if args.dataset is None else (args.dataset,)
    for v in versions:
        runs = rs.load_runs(dataset=args.dataset, version=v,
                            results_dir=results_dir, strict=False)
        if not runs:
            status = 1
            available = rs.list_versions(args.dataset, results_dir)
            print(f"No runs found for version {v!r}: looked for "
                  f"{results_dir}/<dataset>/{v}/<framework>/run_NNNN.json "
                  f"(dataset: {' or '.join(datasets)}; framework: "
                  f"{' or '.join(rs.FRAMEWORKS)}). Versions present: "
                  f"{', '.join(available) if available else 'none'}.",
                  file=sys.stderr)
            continue
        shown_versions.append(v)
        all_runs += runs
        for ds in rs.DATASETS:
            ds_runs = [r for r in runs if r["dataset"] == ds]
            if not ds_runs:
                continue
            by_framework = {fw: s for (_, fw), s in summarize(ds_runs).items()}
            print(format_table(ds, v, by_framework, Path(results_dir)))
            print()

    if all_runs and not args.no_plots:
        try:
            paths = make_plots(all_runs, shown_versions, Path(plot_dir))
        except ImportError as exc:
            print(f"cannot plot ({exc}); install matplotlib or use --no-plots",
                  file=sys.stderr)
            return 1
        for path in paths:
            print(f"wrote {path}")
    return status


if __name__ == "__main__":
    sys.exit(main())

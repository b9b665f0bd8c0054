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

It is safe to run while a demo is still training: runs still training are
listed (epoch reached, test error then) but kept out of the statistics, and
corrupt or foreign files are skipped with a warning on stderr (nothing is ever
modified).

Exit status: 0 on success, 1 when a requested version has no runs (or plots
could not be made), 2 on bad arguments (e.g. an invalid version string).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script (python demos/show_results.py): make this checkout's
    # `demos` package importable, whatever the current folder is.
    _REPO_ROOT = str(Path(__file__).resolve().parent.parent)
    if sys.path[:1] != [_REPO_ROOT]:
        sys.path.insert(0, _REPO_ROOT)

from demos import registry  # noqa: E402
from demos import results_store as rs  # noqa: E402
from demos.checkpoint import CheckpointDir, CheckpointError  # noqa: E402
from demos.plots import make_plots  # noqa: E402
from demos.recipe import run_arch  # noqa: E402
from demos.registry import REFERENCE_ARCH  # noqa: E402
from demos.stats import format_number, summarize, welch  # noqa: E402
from demos.trainers import FRAMEWORKS  # noqa: E402

#: Default folder for the PNGs: ``<repo>/plots``.
PLOTS_DIR: Path = Path(__file__).resolve().parent.parent / "plots"


# --------------------------------------------------------------------------
# Text output
# --------------------------------------------------------------------------

def _epochs_text(epochs: list[int]) -> str:
    lo, hi = min(epochs), max(epochs)
    return str(lo) if lo == hi else f"{lo}-{hi}"


def format_table(dataset: str, version: str, stats: dict,
                 results_dir: Path, arch: str | None = None) -> str:
    """Format the statistics of one dataset and version as a text table.

    Args:
        dataset: dataset name.
        version: version label.
        stats: ``{framework: stats}`` with stats as from
            :func:`demos.stats.summarize`.
        results_dir: results root, shown in the heading.
        arch: the runs' ``--arch``, named in the heading (``None``: not named).

    Returns:
        The table, including the framework comparison when both frameworks
        are present (no trailing newline).
    """
    header = ("framework", "runs", "epochs", "mean err %", "std", "stderr",
              "min %", "max %")
    rows = []
    for fw in FRAMEWORKS:
        if fw in stats:
            s = stats[fw]
            rows.append((fw, str(s["n"]), _epochs_text(s["epochs"]),
                         *(format_number(s[k]) for k in ("mean", "std", "stderr", "min", "max"))))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))

    named = "" if arch is None else f"  --arch {arch}"
    out = [f"== {dataset} / {version}  ({results_dir / dataset / version}){named}",
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
    if not all(fw in stats for fw in FRAMEWORKS[:2]):
        return []
    a_name, b_name = FRAMEWORKS[:2]
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


def in_progress_lines(version: str, dataset: str | None, results_dir: Path) -> list[str]:
    """One line per run of ``version`` that is still training (its newest checkpoint):
    the epoch reached, the test error then and its ``--arch``; such runs are in no statistics.

    A checkpoint that cannot be read gives a line saying why (nothing is changed).
    """
    lines = []
    for ds in registry.names() if dataset is None else (dataset,):
        for fw in FRAMEWORKS:
            folder = CheckpointDir(ds, version, fw, results_dir)
            where = f"in progress: {ds} / {version} / {fw}"
            try:
                runs = sorted(folder.runs_in_progress())
            except CheckpointError as error:
                lines.append(f"{where}: unreadable checkpoint folder ({error})")
                continue
            for run in runs:
                try:
                    checkpoint = folder.latest(run)
                except CheckpointError as error:
                    lines.append(f"{where} run {run}: unreadable checkpoint ({error})")
                    continue
                if checkpoint is None:  # it finished (or was abandoned) since the listing
                    continue
                record = checkpoint.record
                last = record["epochs"][-1]
                lines.append(f"{where} run {run}: epoch {last['epoch']}/{record['settings']['epochs']}, "
                             f"test error {format_number(last['test_error'])} % (--arch "
                             f"{run_arch(record)}; not in the statistics)")
    return lines


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
    p.add_argument("--dataset", choices=registry.names(), default=None,
                   help="only this dataset (default: every dataset with runs)")
    p.add_argument("--results-dir", type=Path, default=None,
                   help=f"results root (default: {rs.RESULTS_DIR})")
    p.add_argument("--plot-dir", type=Path, default=None,
                   help=f"folder for the PNG plots (default: {PLOTS_DIR}, or RESULTS_DIR/plots "
                        "with --results-dir)")
    p.add_argument("--no-plots", action="store_true",
                   help="only print the statistics, write no PNG")
    return p


def show_version(version: str, dataset: str | None, results_dir: Path) -> list[dict]:
    """Print the tables of one version (every dataset, or ``dataset``); returns its runs.

    Runs still training are listed first (:func:`in_progress_lines`). With no finished runs, says on stderr where it looked and which versions there are.
    """
    runs = rs.load_runs(dataset=dataset, version=version, results_dir=results_dir, strict=False)
    for line in in_progress_lines(version, dataset, results_dir):
        print(line)
    if not runs:
        datasets = registry.names() if dataset is None else (dataset,)
        available = rs.list_versions(dataset, results_dir)
        print(f"No runs found for version {version!r}: looked for "
              f"{results_dir}/<dataset>/{version}/<framework>/run_NNNN.json "
              f"(dataset: {' or '.join(datasets)}; framework: "
              f"{' or '.join(FRAMEWORKS)}). Versions present: "
              f"{', '.join(available) if available else 'none'}.",
              file=sys.stderr)
        return runs
    for ds in registry.names():
        by_arch: dict[str, list[dict]] = {}
        for record in (r for r in runs if r["dataset"] == ds):
            by_arch.setdefault(run_arch(record), []).append(record)
        if len(by_arch) > 1:
            print(f"note: {ds} / {version} mixes networks ({', '.join(by_arch)}); each is "
                  "shown on its own, never pooled")
        for arch, arch_runs in by_arch.items():
            by_framework = {fw: s for (_, fw), s in summarize(arch_runs).items()}
            named = None if list(by_arch) == [REFERENCE_ARCH] else arch
            print(format_table(ds, version, by_framework, results_dir, named))
            print()
    return runs


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
    for v in versions:
        runs = show_version(v, args.dataset, Path(results_dir))
        if not runs:
            status = 1
            continue
        shown_versions.append(v)
        all_runs += runs

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

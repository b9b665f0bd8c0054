#!/usr/bin/env python
"""Do independent torch and JAX runs reach the same test error? Statistics of the demos' runs.

Usage (from the repository root or anywhere else)::

    python demos/compare_frameworks.py v1               # report on the runs saved so far
    python demos/compare_frameworks.py v1 --train 5     # first complete 5 runs per framework
    python demos/compare_frameworks.py v3p --paired --train 20   # 20 seeds, JAX from torch's weights
    python demos/compare_frameworks.py --help

The runs are the demos' own: ``results/<dataset>/<version>/{torch,jax}/run_NNNN.json``
as written by ``demos/fashion_mnist_torch.py`` / ``demos/fashion_mnist_jax.py``
(each run an independent seed, ``seed + run_index``). With ``--train N`` the
runs missing to reach ``N`` per framework are trained first, through the
demos' own command-line entry point (:func:`demos.runner.main`) with the
reference settings (batch 1024, Adam + one-cycle peaking at ``max_lr`` 0.01)
and ``--epochs`` (default 5), and saved like any demo run.

The report gives, per framework, the number of runs, their seeds and final
test errors, the mean final test error ± its standard error (and the
standard deviation); the difference of the means (torch − JAX) with the
combined standard error ``sqrt(se_torch² + se_jax²)``; Welch's t-test
(``scipy.stats.ttest_ind(equal_var=False)``), the 90 % confidence interval of
the difference, the equivalence test within ``±--margin`` points (two
one-sided Welch tests; default 0.25), the runs per framework such a test
would need, and whether the two means lie within two combined standard
errors of each other; plus ``error_distributions.png`` beside the report.
Each framework's runs must start from their own framework's initialisation.

``--paired`` compares pairs instead (:mod:`demos.paired_comparison`): per
seed, a torch run and a JAX run started from the torch run's initial
parameters (``--init-from torch``) on the same batches; the per-seed
differences, their mean with a 95 % interval and the equivalence test within
``±--margin`` (default 0.1), in ``comparison_paired.txt`` and
``paired_differences.png``; exit status 0 when equivalence is shown. Every run compared must
have the same settings (epochs, batch size, max_lr, schedule, dataset sizes,
dtype); anything else is refused, naming the runs. The report is printed and
written, atomically, to ``results/<dataset>/<version>/comparison.txt``.

Exit status: 0 when the two means lie within two combined standard errors;
1 when they do not (find out why before trusting the twins); 2 for bad
arguments, unreadable results, runs with different settings, fewer than two
runs per framework, or failed training.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    _REPO_ROOT = str(Path(__file__).resolve().parent.parent)
    if sys.path[:1] != [_REPO_ROOT]:
        sys.path.insert(0, _REPO_ROOT)

from demos import atomic, cli, registry, trainers  # noqa: E402
from demos import results_store as rs  # noqa: E402
from demos.recipe import (  # noqa: E402
    COMPARED_SETTINGS,
    COMPARISON,
    COMPARISON_RUNS,
)
from demos.paired_comparison import (  # noqa: E402
    PAIRED_MARGIN,
    PairingError,
    compare_paired,
    format_paired_report,
)
from demos.recipe import saved_setting  # noqa: E402
from demos.stats import (  # noqa: E402
    equivalence_runs,
    equivalence_welch,
    format_number,
    summarize,
    two_se_check,
    welch,
    welch_interval,
)
from demos.trainers import FRAMEWORKS  # noqa: E402

__all__ = ["parse_args", "compare", "format_report", "write_report", "main"]

REPORT_NAME = "comparison.txt"
PAIRED_REPORT_NAME = "comparison_paired.txt"
#: The equivalence margin of the unpaired design, in percentage points of test error.
UNPAIRED_MARGIN = 0.25


class ComparisonError(RuntimeError):
    """The runs cannot be compared (too few, different settings); the message says why."""


def parse_args(argv=None) -> argparse.Namespace:
    """The command line (``--help`` explains every flag)."""
    parser = argparse.ArgumentParser(
        prog="demos/compare_frameworks.py",
        description=(
            "Compare the final test error of independent torch and JAX runs of the demos "
            "(mean ± standard error per framework, Welch's t-test, two-standard-error check) "
            "and write the report to results/DATASET/VERSION/comparison.txt."
        ),
    )
    parser.add_argument("version", type=cli.version,
                        help="results version whose runs are compared (letters, digits, underscores)")
    parser.add_argument("--dataset", default="fashion_mnist", choices=registry.names(),
                        help="dataset (default: %(default)s)")
    parser.add_argument("--train", type=cli.positive_int, default=None, metavar="N",
                        help="first train the runs missing to reach N per framework, through the "
                             "demos' code path (default: only report on the saved runs)")
    parser.add_argument("--epochs", type=cli.positive_int, default=COMPARISON.epochs,
                        help="epochs per new run with --train (default: %(default)s)")
    parser.add_argument("--batch-size", type=cli.positive_int, default=COMPARISON.batch_size,
                        help="batch size of new runs with --train (default: %(default)s)")
    parser.add_argument("--max-lr", type=cli.positive_float, default=COMPARISON.max_lr,
                        help="peak learning rate of new runs with --train (default: %(default)s)")
    parser.add_argument("--seed", type=cli.seed, default=COMPARISON.seed,
                        help="base seed of new runs, run N uses seed + N, as in the demos "
                             "(default: %(default)s)")
    parser.add_argument("--data-dir", default=None,
                        help="local dataset files for --train (see the demos' --help)")
    parser.add_argument("--device", default=None,
                        help="torch device for --train (default: cuda if available, else cpu)")
    parser.add_argument("--results-dir", default=None,
                        help="results root (default: the repository's results/)")
    parser.add_argument("--no-progress", action="store_true", help="hide the demos' progress bars")
    parser.add_argument("--no-write", action="store_true",
                        help="print the report without writing it (and the plot)")
    parser.add_argument("--paired", action="store_true",
                        help="compare per seed: the JAX runs start from the torch runs' initial "
                             "parameters (trained so with --train); report in comparison_paired.txt")
    parser.add_argument("--margin", type=cli.positive_float, default=None,
                        help="equivalence margin in percentage points (default: "
                             f"{PAIRED_MARGIN} paired, {UNPAIRED_MARGIN} unpaired)")
    args = parser.parse_args(argv)
    if args.margin is None:
        args.margin = PAIRED_MARGIN if args.paired else UNPAIRED_MARGIN
    return args


# ----------------------------------------------------------------- training


def train_missing(args, train_demo=None) -> None:
    """Add runs through the demos' entry point until each framework has ``args.train`` of them.

    ``train_demo(dataset, framework, argv) -> exit status`` defaults to
    :func:`demos.runner.main` (imported lazily: torch and JAX are loaded only
    when training).

    Raises:
        ComparisonError: a demo failed (its exit status is named) or left runs missing.
    """
    if train_demo is None:
        from demos.runner import main as train_demo
    for framework in FRAMEWORKS:
        have = len(rs.load_runs(args.dataset, args.version, framework, args.results_dir))
        missing = args.train - have
        if missing <= 0:
            print(f"{framework}: {have} run(s) saved, none to add", flush=True)
            continue
        print(f"{framework}: {have} run(s) saved, training {missing} more", flush=True)
        argv = [args.version, "--runs", str(missing), "--epochs", str(args.epochs),
                "--batch-size", str(args.batch_size), "--max-lr", repr(args.max_lr),
                "--seed", str(args.seed)]
        for flag, value in (("--data-dir", args.data_dir), ("--results-dir", args.results_dir)):
            if value is not None:
                argv += [flag, str(value)]
        if args.device is not None and trainers.trainer_class(framework).takes_device:
            argv += ["--device", args.device]
        if args.no_progress:
            argv.append("--no-progress")
        if getattr(args, "paired", False) and framework != "torch":
            argv += ["--init-from", "torch"]  # the partner of the torch run of its seed
        status = train_demo(args.dataset, framework, argv)
        now = len(rs.load_runs(args.dataset, args.version, framework, args.results_dir))
        if status != 0 or now < args.train:
            raise ComparisonError(
                f"training {framework} runs failed (demo exit status {status}); "
                f"{now} of {args.train} runs saved in "
                f"{rs.run_dir(args.dataset, args.version, framework, args.results_dir)}")


# ----------------------------------------------------------------- statistics


def _settings_key(record: dict) -> tuple:
    return tuple((k, saved_setting(record, k)) for k in COMPARED_SETTINGS)


def _check_settings(runs: list[dict]) -> None:
    """Refuses runs that do not share :data:`demos.recipe.COMPARED_SETTINGS`, naming them."""
    groups: dict[tuple, list[str]] = {}
    for record in runs:
        groups.setdefault(_settings_key(record), []).append(_describe_run(record))
    if len(groups) > 1:
        lines = [", ".join(f"{k}={v!r}" for k, v in key) + ":\n    " + " ".join(names)
                 for key, names in groups.items()]
        raise ComparisonError(
            "the runs do not share their settings, so their final errors are not comparable:\n  "
            + "\n  ".join(lines) + "\nMove the odd runs to another version, or compare another version.")


def _check_own_initialisation(runs: list[dict]) -> None:
    """The unpaired design: each run started from its own framework's initial parameters."""
    for record in runs:
        init = saved_setting(record, "init_from")
        if init != record["framework"]:
            raise ComparisonError(
                f"{_describe_run(record)} started from {init}'s initial parameters: compare such "
                "runs with --paired, or keep them in another version")


def _describe_run(record: dict) -> str:
    return f"{record['framework']}/run_{record['run_index']:04d}"


def compare(runs: list[dict], margin: float = UNPAIRED_MARGIN) -> dict:
    """Statistics of the final test errors of both frameworks' runs (one dataset and version).

    Returns:
        ``{"stats": {framework: summarize stats}, "settings": {...}, "difference": torch − JAX
        mean, "combined_stderr", "within_two_se", "welch_t", "welch_p", "welch_df",
        "interval": 90 % interval of the difference, "margin", "equivalence_p": TOST within
        ±margin, "pooled_std", "runs_for_equivalence": runs per framework for that test}``.

    Raises:
        ComparisonError: a framework has fewer than two runs, the runs do not share
            :data:`demos.recipe.COMPARED_SETTINGS`, or a final test error is not finite.
    """
    by_fw = {fw: [r for r in runs if r["framework"] == fw] for fw in FRAMEWORKS}
    counts = {fw: len(rs_) for fw, rs_ in by_fw.items()}
    if min(counts.values()) < 2:
        raise ComparisonError(
            "need at least 2 runs per framework to estimate a standard error, found "
            + ", ".join(f"{fw}: {n}" for fw, n in counts.items())
            + f"; add runs with --train N (N >= {COMPARISON_RUNS} recommended)")
    _check_settings(runs)
    _check_own_initialisation(runs)
    for record in runs:
        final = record["epochs"][-1]["test_error"]
        if not math.isfinite(final):
            raise ComparisonError(f"{_describe_run(record)}: final test error is {final}")
    stats = {}
    for fw, group in by_fw.items():
        stats[fw] = summarize(group)[(group[0]["dataset"], fw)]
        stats[fw]["seeds"] = [r["seed"] for r in group]
    a, b = (stats[fw] for fw in FRAMEWORKS)
    difference, combined, within = two_se_check(a, b)
    test = welch(a["final_errors"], b["final_errors"])
    pooled_std = math.sqrt(((a["n"] - 1) * a["std"] ** 2 + (b["n"] - 1) * b["std"] ** 2)
                           / (a["n"] + b["n"] - 2))
    return {
        "stats": stats,
        "settings": dict(_settings_key(runs[0])),
        "difference": difference,
        "combined_stderr": combined,
        "within_two_se": within,
        "welch_t": test.t,
        "welch_p": test.p,
        "welch_df": test.df,
        "interval": welch_interval(a["final_errors"], b["final_errors"], 0.9),
        "margin": margin,
        "equivalence_p": equivalence_welch(a["final_errors"], b["final_errors"], margin),
        "pooled_std": pooled_std,
        "runs_for_equivalence": equivalence_runs(pooled_std, margin) if pooled_std > 0 else 2,
    }


def format_report(dataset: str, version: str, result: dict, runs: list[dict]) -> str:
    """The comparison as text (what ``comparison.txt`` holds)."""
    settings = result["settings"]
    stats = result["stats"]
    reference = (settings.get("batch_size") == COMPARISON.batch_size
                 and settings.get("max_lr") == COMPARISON.max_lr
                 and (settings.get("epochs") or 0) >= COMPARISON.epochs
                 and min(s["n"] for s in stats.values()) >= COMPARISON_RUNS)
    lines = [
        f"torch vs JAX: {dataset} / {version}",
        f"written {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')} "
        "by demos/compare_frameworks.py",
        "settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()),
        f"reference settings (>= {COMPARISON_RUNS} runs per framework, >= {COMPARISON.epochs} "
        f"epochs, batch {COMPARISON.batch_size}, max_lr {COMPARISON.max_lr}): "
        + ("yes" if reference else "NO"),
    ]
    sources = sorted({str(r["settings"].get("data_source")) for r in runs})
    lines.append("data: " + "; ".join(sources))
    packages = {}
    for r in runs:
        for name, ver in (r.get("packages") or {}).items():
            packages.setdefault(name, set()).add(ver)
    if packages:
        lines.append("packages: " + ", ".join(f"{k} {'/'.join(sorted(v))}" for k, v in sorted(packages.items())))
    lines.append("")
    lines.append("final test error (%) per run")
    for fw in FRAMEWORKS:
        s = stats[fw]
        runs_text = "  ".join(f"run {i} (seed {seed}): {e:.2f}"
                              for i, seed, e in zip(s["run_indices"], s["seeds"], s["final_errors"]))
        lines.append(f"  {fw:5s} {runs_text}")
    lines.append("")
    lines.append(f"{'framework':9s}  {'runs':>4s}  {'mean %':>8s}  {'stderr':>7s}  {'std':>7s}  "
                 f"{'min %':>7s}  {'max %':>7s}")
    for fw in FRAMEWORKS:
        s = stats[fw]
        mean, stderr, std, low, high = (format_number(s[k]) for k in ("mean", "stderr", "std", "min", "max"))
        lines.append(f"{fw:9s}  {s['n']:4d}  {mean:>8s}  {stderr:>7s}  {std:>7s}  {low:>7s}  {high:>7s}")
    for fw in FRAMEWORKS:
        s = stats[fw]
        lines.append(f"{fw}: {s['mean']:.3f} ± {s['stderr']:.3f} % (mean ± standard error, n = {s['n']})")
    lines.append("")
    diff, se = result["difference"], result["combined_stderr"]
    lines.append(f"difference of means (torch - jax): {diff:+.3f} percentage points")
    lines.append(f"combined standard error sqrt(se_torch^2 + se_jax^2): {se:.3f}")
    p = result["welch_p"]
    note = " (undefined: no spread in the final errors)" if math.isnan(p) else ""
    lines.append(f"Welch's t-test: t = {format_number(result['welch_t'])}, "
                 f"df = {format_number(result['welch_df'], 2)}, p = {p:.4g}{note}")
    interval = result["interval"]
    lines.append(f"90 % confidence interval of the difference (Welch): "
                 f"[{interval.low:+.3f}, {interval.high:+.3f}]")
    margin, p_eq = result["margin"], result["equivalence_p"]
    lines.append(f"equivalence within ±{margin} points (two one-sided Welch tests): p = {p_eq:.4g}: "
                 + ("shown at the 5 % level" if p_eq < 0.05 else "not shown at the 5 % level"))
    lines.append(f"runs per framework an equivalence test within ±{margin} points needs (80 % power, "
                 f"equal means, standard deviation {result['pooled_std']:.3f}): "
                 f"{result['runs_for_equivalence']}")
    if result["within_two_se"]:
        lines.append(f"check: |difference| = {abs(diff):.3f} <= 2 x combined standard error = "
                     f"{2 * se:.3f}: the means agree within two standard errors")
    else:
        lines.append(f"check FAILED: |difference| = {abs(diff):.3f} > 2 x combined standard error = "
                     f"{2 * se:.3f}: the means differ by more than two standard errors; find why")
    return "\n".join(lines) + "\n"


def _version_dir(dataset: str, version: str, results_dir=None) -> Path:
    return Path(rs.RESULTS_DIR if results_dir is None else results_dir) / dataset / version


def write_report(text: str, dataset: str, version: str, results_dir=None, name: str = REPORT_NAME) -> Path:
    """Write ``text`` to ``<results>/<dataset>/<version>/<name>`` atomically.

    A temp file in the same folder is written, flushed and fsynced, then
    renamed over the report (``os.replace``): readers see the old report or
    the new one, never a partial file.
    """
    folder = _version_dir(dataset, version, results_dir)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    atomic.replace_file(target, text.encode("utf-8"))
    return target


def _unpaired(args, runs: list[dict]) -> tuple[str, int]:
    """The unpaired report, its exit status and the plot to draw (Welch, two-SE check)."""
    from demos.comparison_plots import plot_error_distributions

    result = compare(runs, args.margin)
    text = format_report(args.dataset, args.version, result, runs)
    if not args.no_write:
        errors = {fw: result["stats"][fw]["final_errors"] for fw in FRAMEWORKS}
        plot = _version_dir(args.dataset, args.version, args.results_dir) / "error_distributions.png"
        plot_error_distributions(errors, f"{args.dataset} / {args.version}: final test error per run", plot)
    return text, 0 if result["within_two_se"] else 1


def _paired(args, runs: list[dict]) -> tuple[str, int]:
    """The paired report and its exit status (0 when equivalence within the margin is shown)."""
    from demos.comparison_plots import plot_paired_differences

    _check_settings(runs)
    comparison = compare_paired(runs, args.margin)
    settings = "settings: " + ", ".join(f"{k}={v}" for k, v in _settings_key(runs[0]))
    text = format_paired_report(args.dataset, args.version, comparison, settings)
    if not args.no_write:
        plot = _version_dir(args.dataset, args.version, args.results_dir) / "paired_differences.png"
        plot_paired_differences(comparison["result"], comparison["seeds"],
                                f"{args.dataset} / {args.version}: JAX − torch per seed", plot)
    return text, 0 if comparison["result"].equivalence_p < 0.05 else 1


def main(argv=None, *, train_demo=None) -> int:
    """Run the comparison; returns the exit status (see the module docstring)."""
    args = parse_args(argv)
    try:
        if args.train is not None:
            train_missing(args, train_demo)
        runs = rs.load_runs(args.dataset, args.version, None, args.results_dir)
        text, status = (_paired if args.paired else _unpaired)(args, runs)
    except (rs.ResultsError, ComparisonError, PairingError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(text, end="")
    if not args.no_write:
        name = PAIRED_REPORT_NAME if args.paired else REPORT_NAME
        path = write_report(text, args.dataset, args.version, args.results_dir, name)
        print(f"written to {path}")
    return status


if __name__ == "__main__":
    sys.exit(main())

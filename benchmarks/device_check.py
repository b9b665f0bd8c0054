"""One-command check of the project on the machine at hand (meant for the first GPU): parity and speed.

Usage::

    python benchmarks/device_check.py OUTDIR            # on the GPU machine: ~8 minutes at most
    python benchmarks/device_check.py OUTDIR --dry-run  # tiny sizes, on a CPU (CI): ~2 minutes

Needs torch, jax (with its CUDA plugin on a GPU), flax, optax, orbax, pytest,
hypothesis, numpy, matplotlib and tqdm; no TensorFlow, no TensorFlow
Datasets, no network, nothing installed (the repository is put on
``sys.path``). In order, each section in a process of its own, with a time
limit (its budget plus what earlier sections left unused):

1. ``versions``: the packages and the devices as the frameworks see them;
2. ``parity``: the parity tests that need no data and no TFDS
   (:data:`PARITY_FILES`; float64 and float32, TF32 off, matmul precision
   highest, as ``parity_tests/conftest.py`` pins them; torch's side of the
   layer comparisons on CUDA when there is a GPU);
3. ``torch_steps``, ``jax_steps``: the Fashion-MNIST network's training step
   (SCS vs the identical-shape plain network; torch eager vs its fused kernels
   vs the CUDA-graphs opt-in; JAX's step loop), one full epoch (step loop and,
   where it exists, the whole-epoch scan), compile times and peak device memory;
4. ``parallel_jax``, ``parallel_torch``: one epoch of K runs trained together
   for K in :data:`RUNS`, runs per hour of 100-epoch runs (where
   ``--parallel-runs`` exists; one process per K).

All on synthetic data of the real shapes (60,000 + 10,000 images, batch
1024). Written to OUTDIR as it goes: ``device_check.txt`` (the report),
``device_check.json`` (every number), ``sections/<name>.json`` (each
section's partial results), ``parity.log``. Exit status: 0 all sections
complete (measurements a section skipped to keep to its time are noted,
not errors); 1 a parity test failed; 3 a section (the parity tests
included) failed otherwise or was stopped at its time limit; 2 a bad
command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import device_report  # noqa: E402
from benchmarks.device_sections import DRY, NOT_AVAILABLE, REAL, SECTIONS, Record, parallel, parallel_available  # noqa: E402
from demos import machine as host  # noqa: E402

#: Seconds per section on the GPU (8 minutes in all); the dry run's are limits for a 2-core CPU.
BUDGETS = {"versions": 20, "parity": 180, "torch_steps": 85, "jax_steps": 70, "parallel_jax": 75,
           "parallel_torch": 50}
DRY_BUDGETS = {"versions": 40, "parity": 90, "torch_steps": 60, "jax_steps": 60, "parallel_jax": 60,
               "parallel_torch": 45}
#: K, the runs trained together in the parallel sections.
RUNS, DRY_RUNS = (1, 8, 64, 256), (1, 2)
#: Parity test files that need neither TFDS nor data files (data tests: test_data.py, the demo tests).
#: Most telling first: a time-out leaves the last ones unrun (and counts what ran).
#: (CPU seconds of each, 2 loaded cores: 38, 17, 11, 71, 25, 3, 2, 0, 27, 63, 52, 229.)
PARITY_FILES = ("test_layer_parity.py", "test_network_parity.py", "test_device_dtype.py", "test_trajectories.py",
                "test_pool_parity.py", "test_edge_cases.py", "test_reference.py", "test_float32_check.py",
                "test_second_order.py", "test_properties.py", "test_optim.py", "test_fused_pool.py")
#: The dry run's few: one layer comparison per dtype, the Fashion-MNIST network per dtype, the device tests.
DRY_PARITY_FILES = ("test_layer_parity.py::test_layer_at_initial_parameters",
                    "test_network_parity.py::test_network_random_images", "test_device_dtype.py")
PACKAGES = ("torch", "jax", "jaxlib", "jax-cuda12-plugin", "jax-cuda13-plugin", "flax", "optax", "orbax-checkpoint",
            "numpy", "pytest", "hypothesis", "matplotlib", "tqdm", "tensorflow", "tensorflow-datasets")
_QUIET_JAX = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}  # processes that share the GPU with torch


def _gpu_smi() -> str | None:
    """``nvidia-smi``'s name, memory and driver of each GPU, or ``None`` without one."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _child(argv: list[str], timeout: float, log: Path | None = None, env: dict | None = None) -> dict:
    """Run ``argv`` (cwd: the repository) for at most ``timeout`` s: status, seconds, output's tail."""
    start = time.perf_counter()
    environment = {**os.environ, **(env or {})}
    with open(log or os.devnull, "w") as sink:
        try:
            completed = subprocess.run(argv, cwd=ROOT, env=environment, timeout=max(timeout, 1),
                                       stdout=sink if log else subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            status = "ok" if completed.returncode == 0 else f"failed (exit status {completed.returncode})"
            tail, returncode = (completed.stdout or "")[-3000:], completed.returncode
        except subprocess.TimeoutExpired as expired:
            status, tail, returncode = f"timed out after {timeout:.0f} s", (expired.stdout or b"")[-3000:], None
            tail = tail.decode(errors="replace") if isinstance(tail, bytes) else tail
    if log:
        tail = log.read_text(errors="replace")[-3000:]
    return {"status": status, "returncode": returncode, "seconds": time.perf_counter() - start, "tail": tail}


def _section(name: str, args, budget: float, extra: list[str] = (), env: dict | None = None, key: str = "") -> dict:
    """Run one measuring section in a fresh process; its (partial) record and how it ended."""
    path = args.outdir / "sections" / f"{key or name}.json"
    path.unlink(missing_ok=True)
    argv = [sys.executable, str(Path(__file__).resolve()), str(args.outdir), "--section", name,
            "--record", str(path), "--deadline", str(time.time() + budget - 3), *extra]
    if args.dry_run:
        argv.append("--dry-run")
    ran = _child(argv, budget, env=env)
    ran["record"] = json.loads(path.read_text()) if path.exists() else {}
    return ran


def _parity(args, budget: float) -> dict:
    """pytest on the parity files (verbose log parsed, so a time-out still counts what ran)."""
    files = [str(ROOT / "parity_tests" / f) for f in (DRY_PARITY_FILES if args.dry_run else PARITY_FILES)]
    log = args.outdir / "parity.log"
    env = {**_QUIET_JAX, "PARITY_TORCH_DEVICE": "cuda" if args.gpu else "cpu"}
    ran = _child([sys.executable, "-m", "pytest", "-v", "-rs", "-p", "no:cacheprovider", *files], budget, log, env)
    text = log.read_text(errors="replace")
    counts = {word.lower(): len(re.findall(rf"::\S+ {word}\b", text)) for word in ("PASSED", "FAILED", "SKIPPED", "ERROR")}
    summary = re.findall(r"^=+ (.*\d+ (?:passed|failed|error).*) in [\d.]+s", text, re.M)
    if summary:  # pytest's own count, where it got to the end (singular "error" as pytest writes it)
        counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|error)", summary[-1])}
    ran.update(counts=counts, files=[Path(f).name for f in files],
               failed_tests=re.findall(r"^FAILED (\S+)", text, re.M)[:50],
               skip_reasons=sorted(set(re.findall(r"^SKIPPED \[\d+\] (.*)$", text, re.M)))[:20],
               torch_device=env["PARITY_TORCH_DEVICE"])
    return ran


def _parallel(framework: str, args, budget: float) -> dict:
    """One process per K, in increasing K, until one fails, does not fit, or the budget is spent."""
    if not parallel_available():
        return {"status": NOT_AVAILABLE, "seconds": 0.0, "runs": {}}
    end, results, status, last = time.time() + budget, {}, "ok", 0.0
    for runs in (DRY_RUNS if args.dry_run else RUNS):
        left = end - time.time()
        if left < max(10.0, 1.5 * last):  # a larger K than the last would not finish
            results[runs] = {"status": f"skipped: {left:.0f} s left of the section's time"}
            break
        ran = _section(f"parallel_{framework}", args, left, ["--runs", str(runs)], key=f"parallel_{framework}_{runs}")
        results[runs], last = ran, ran["seconds"]
        if ran["status"] != "ok" or "does_not_fit" in ran["record"]:
            status = "ok" if "does_not_fit" in ran["record"] else ran["status"]
            break
    return {"status": status, "seconds": budget - max(end - time.time(), 0), "runs": results}


def run_check(args) -> dict:
    """Every section in turn within its budget; the report and the JSON rewritten after each."""
    budgets = DRY_BUDGETS if args.dry_run else BUDGETS
    result = {"info": _host_info(args), "sections": {}}
    banked = 0.0
    for name, budget in budgets.items():
        limit = budget + banked
        print(f"[device check] {name} (at most {limit:.0f} s) ...", file=sys.stderr, flush=True)
        if name == "parity":
            section = _parity(args, limit)
        elif name.startswith("parallel_"):
            section = _parallel(name.split("_", 1)[1], args, limit)
        else:
            section = _section(name, args, limit, env=_QUIET_JAX if name == "versions" else None)
        result["sections"][name] = section
        if name == "versions":  # print them now: the rest may take minutes
            args.gpu = bool(section["record"].get("torch", {}).get("cuda_available"))
            print(device_report.render(result).split("\n\n")[0], file=sys.stderr, flush=True)
        banked = max(limit - section["seconds"], 0.0)
        print(f"[device check] {name}: {section['status']} in {section['seconds']:.0f} s", file=sys.stderr, flush=True)
        _write(args.outdir, result, args)
    result["exit_status"] = exit_status(result["sections"])
    _write(args.outdir, result, args)
    return result


def exit_status(sections: dict) -> int:
    """1: a parity test failed (or errored); 3: a section (the parity tests too) did not complete; else 0."""
    parity = sections.get("parity", {})
    counts = parity.get("counts", {})
    if counts.get("failed") or counts.get("error") or parity.get("returncode") == 1:  # pytest's 1: tests failed
        return 1
    for section in sections.values():
        if section["status"] not in ("ok", NOT_AVAILABLE):
            return 3
    return 0


def _host_info(args) -> dict:
    return {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "code": host.code_version(),
            "cpu": host.cpu_name(), "cores": os.cpu_count(), "python": platform.python_version(),
            "gpu": _gpu_smi(), "packages": host.package_versions(PACKAGES), "dry_run": args.dry_run,
            "sizes": dataclasses.asdict(DRY if args.dry_run else REAL),
            "budgets_s": DRY_BUDGETS if args.dry_run else BUDGETS}


def _write(outdir: Path, result: dict, args) -> None:
    text = device_report.render(result)
    for name, content in (("device_check.txt", text + "\n"), ("device_check.json", json.dumps(result, indent=1, default=str))):
        tmp = outdir / (name + ".tmp")
        tmp.write_text(content)
        os.replace(tmp, outdir / name)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outdir", type=Path, help="folder for device_check.txt, device_check.json and logs")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes and short budgets, for a CPU (CI)")
    parser.add_argument("--section", choices=(*SECTIONS, "parallel_jax", "parallel_torch"), help=argparse.SUPPRESS)
    parser.add_argument("--record", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.outdir.exists() and not args.outdir.is_dir():
        parser.error(f"OUTDIR: expected a folder (or a path to create), got the file {str(args.outdir)!r}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    sizes = DRY if args.dry_run else REAL
    if args.section:  # a child process: one section
        record = Record(args.record, args.deadline)
        if args.section.startswith("parallel_"):
            parallel(sizes, record, args.section.split("_", 1)[1], args.runs)
        else:
            SECTIONS[args.section](sizes, record)
        return 0
    (args.outdir / "sections").mkdir(parents=True, exist_ok=True)
    args.gpu = False
    result = run_check(args)
    print(device_report.render(result))
    print(f"\nwrote {args.outdir / 'device_check.txt'} and device_check.json; exit status {result['exit_status']}",
          file=sys.stderr)
    return result["exit_status"]


if __name__ == "__main__":
    sys.exit(main())

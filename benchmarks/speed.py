"""Speed benchmark: the SCS network against plain convolution and the unfold baseline, both frameworks.

Usage::

    python benchmarks/speed.py [--framework torch|jax|both] [--repeats N] [--batch-size 1024]
                               [--out results/benchmarks/speed_<date>.txt] [--no-epoch] [--no-compile]

One invocation runs, one after the other, a fresh subprocess per framework
(so the frameworks never compete for the cores; ``--rounds`` times,
alternating torch and JAX, samples pooled) that times, after warm-up steps,
the median of ``--repeats`` repetitions of:

* one training step (forward, backward, Adam update, learning-rate schedule)
  of the Fashion-MNIST SCS network at ``--batch-size``, through the demo
  trainers' own ``train_step`` (:class:`demos.train_torch.TorchTrainer`,
  :class:`demos.train_jax.JaxTrainer`), and one evaluation pass over one
  batch (``evaluate``);
* the same for the identical-shape plain network
  (:func:`demos.architectures.plain_conv_variant`: ``Conv2d`` + bias,
  ``MaxPool2d``), through the same trainer;
* the same for the unfold baseline (:mod:`benchmarks.unfold_baseline`: patches
  materialised, then a dot product, and MaxAbsPool as two max-poolings, the
  reference's formulation), through the same trainer;
* torch only, unless ``--no-compile``: the SCS network with the opt-in fused
  kernels (:mod:`scs_torch.compiled`, ``torch.compile``).

The variants' steps are interleaved (one step of each in turn), so a change
in the machine's load hits them alike. Then, unless ``--no-epoch``, a fresh
subprocess per framework runs the real demo (``demos.runner.main``, real
Fashion-MNIST, 2 epochs, one run, into a temporary results folder) with its
trainer's ``train_step``/``evaluate`` timed call by call, and reports the
peak resident memory (``ru_maxrss``) of that process, each epoch's time
against (steps x median step time), and for JAX how many times the train and
evaluation steps were compiled.

Then, unless ``--no-runs-per-hour``, :mod:`benchmarks.runs_per_hour` times
the ways to train side by side per framework — JAX's step loop and epoch
scan, ``--parallel-runs`` K runs at once mapped and vmapped, torch's loop and
K runs — and reports runs per hour relative to one run (the epoch scan /
step loop ratio included).

The report (absolute milliseconds labelled with the machine, then the ratios
SCS / floor, SCS / same-framework plain, SCS / unfold baseline per framework,
where the floor is the faster of the two frameworks' plain-network steps) is
printed and saved to ``--out`` with a JSON copy of every measurement next to
it. Timings are wall-clock; on a shared machine they are noisy, which is why
every ratio is taken between medians measured in the same process run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks import runs_per_hour  # noqa: E402
from demos import machine as host  # noqa: E402
from demos.recipe import REFERENCE  # noqa: E402
from demos.trainers import FRAMEWORKS, trainer_class  # noqa: E402

TARGETS = {  # framework: (SCS / floor, SCS / unfold baseline), from issue 6
    "torch": (2.0, 0.2),
    "jax": (1.5, 0.1),
}
VARIANT_LABELS = {
    "scs": "SCS network",
    "scs_compiled": "SCS network, fused kernels (opt-in)",
    "plain": "plain conv network",
    "unfold": "unfold baseline",
}


# --------------------------------------------------------------------------- machine


def machine() -> dict:
    return {
        "cpu": host.cpu_name(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "packages": host.package_versions(("torch", "jax", "jaxlib", "flax", "optax", "numpy")),
        "code": host.code_version(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


# --------------------------------------------------------------------------- step workers


def synthetic_data(n: int, seed: int = 0):
    """Fashion-MNIST-shaped data: ``(n, 28, 28, 1)`` float32 in [0, 1] and labels in 0..9."""
    rng = np.random.default_rng(seed)
    return rng.random((n, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, n)


def time_variants(variants: dict, args) -> dict:
    """Interleaved timing of ``train_step`` and ``evaluate`` for every variant.

    ``variants`` maps a name to ``(trainer, context)``; ``context()`` is
    entered around every call of that trainer.
    """
    images, labels = synthetic_data(args.train_examples)
    eval_images, eval_labels = images[: args.batch_size], labels[: args.batch_size]
    rng = np.random.default_rng(1)

    def batch():
        return rng.choice(len(labels), args.batch_size, replace=False)

    results = {name: {"step_s": [], "step_cpu_s": [], "eval_s": []} for name in variants}
    for name, (trainer, context) in variants.items():
        start = time.perf_counter()
        with context():
            for _ in range(args.warmup):
                trainer.train_step(batch())
            trainer.evaluate(eval_images, eval_labels)
        results[name]["warmup_s"] = time.perf_counter() - start
        print(f"  warmed up {name} in {results[name]['warmup_s']:.1f} s", file=sys.stderr, flush=True)
    names = list(variants)
    for repeat in range(args.repeats):
        order = names[repeat % len(names):] + names[: repeat % len(names)]
        for name in order:
            trainer, context = variants[name]
            indices = batch()
            with context():
                wall, cpu = time.perf_counter(), time.process_time()
                trainer.train_step(indices)
                results[name]["step_s"].append(time.perf_counter() - wall)
                results[name]["step_cpu_s"].append(time.process_time() - cpu)
        for name in order:
            trainer, context = variants[name]
            with context():
                wall = time.perf_counter()
                trainer.evaluate(eval_images, eval_labels)
                results[name]["eval_s"].append(time.perf_counter() - wall)
    for entry in results.values():
        for key in ("step_s", "step_cpu_s", "eval_s"):
            entry[key.replace("_s", "_median_s")] = float(np.median(entry[key]))
    return results


def torch_worker(args) -> dict:
    import inspect

    import torch

    from benchmarks.unfold_baseline import patched_torch
    from demos.architectures import FASHION_MNIST, plain_conv_variant
    from demos.optim import OneCycle
    from demos.train_torch import TorchTrainer

    try:
        import scs_torch.compiled as compiled_kernels
    except (ImportError, AttributeError):  # an older tree (the benchmark also runs on earlier commits)
        compiled_kernels = None
    images, labels = synthetic_data(args.train_examples)
    schedule = OneCycle(max_lr=REFERENCE.max_lr, total_steps=10_000)
    eager = {"compile_kernels": False} if "compile_kernels" in inspect.signature(TorchTrainer).parameters else {}

    def trainer(architecture):
        return TorchTrainer(architecture, schedule, images, labels, seed=0, batch_size=args.batch_size, **eager)

    @contextlib.contextmanager
    def compiled():
        compiled_kernels.enable()
        try:
            yield
        finally:
            compiled_kernels.disable()

    variants = {
        "scs": (trainer(FASHION_MNIST), contextlib.nullcontext),
        "plain": (trainer(plain_conv_variant(FASHION_MNIST)), contextlib.nullcontext),
        "unfold": (trainer(FASHION_MNIST), patched_torch),
    }
    if args.compile and compiled_kernels is not None:
        variants["scs_compiled"] = (trainer(FASHION_MNIST), compiled)
    results = time_variants(variants, args)
    return {
        "framework": "torch",
        "threads": torch.get_num_threads(),
        "memory_format": str(getattr(variants["scs"][0], "memory_format", torch.contiguous_format)),
        "variants": results,
    }


def jax_worker(args) -> dict:
    import jax

    from benchmarks.unfold_baseline import patched_jax
    from demos.architectures import FASHION_MNIST, plain_conv_variant
    from demos.optim import OneCycle
    from demos.train_jax import JaxTrainer

    images, labels = synthetic_data(args.train_examples)
    schedule = OneCycle(max_lr=REFERENCE.max_lr, total_steps=10_000)

    def trainer(architecture):
        return JaxTrainer(architecture, schedule, images, labels, seed=0, batch_size=args.batch_size)

    variants = {
        "scs": (trainer(FASHION_MNIST), contextlib.nullcontext),
        "plain": (trainer(plain_conv_variant(FASHION_MNIST)), contextlib.nullcontext),
        # traced with the baseline during warm-up; the compiled steps keep it
        "unfold": (trainer(FASHION_MNIST), patched_jax),
    }
    results = time_variants(variants, args)
    compiles = {
        name: {"train_step": t._train_step._cache_size(), "eval_step": t._eval_step._cache_size()}
        for name, (t, _) in variants.items()
    }
    return {
        "framework": "jax",
        "device": str(jax.devices()[0]),
        "variants": results,
        "compiles": compiles,
    }


# --------------------------------------------------------------------------- demo epoch worker


def epoch_worker(args) -> dict:
    """Run the real demo for ``args.epochs`` epochs with its trainer's calls timed; report memory too."""
    from demos import runner

    Trainer = trainer_class(args.epoch_worker)
    steps, evaluations, trainers = [], [], []
    train_steps, evaluate = Trainer.train_steps, Trainer.evaluate

    def timed_train_steps(self, batches):  # a chunk of steps (JAX's epoch scan): its time shared out
        if not trainers or trainers[-1] is not self:
            trainers.append(self)
        start = time.perf_counter()
        result = train_steps(self, batches)
        steps.extend([(time.perf_counter() - start) / len(batches)] * len(batches))
        return result

    def timed_evaluate(self, images, labels):
        start = time.perf_counter()
        result = evaluate(self, images, labels)
        evaluations.append(time.perf_counter() - start)
        return result

    Trainer.train_steps, Trainer.evaluate = timed_train_steps, timed_evaluate
    with tempfile.TemporaryDirectory() as results_dir:
        argv = ["bench", "--epochs", str(args.epochs), "--runs", "1", "--results-dir", results_dir,
                "--batch-size", str(args.batch_size), "--no-progress"]
        start = time.perf_counter()
        status = runner.main("fashion_mnist", args.epoch_worker, argv)
        total = time.perf_counter() - start
        runs = sorted(Path(results_dir).rglob("run_*.json"))
        record = json.loads(runs[-1].read_text()) if runs else None
    out = {
        "framework": args.epoch_worker,
        "status": status,
        "total_s": total,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "step_s": steps,
        "evaluate_s": evaluations,
        "epochs": record["epochs"] if record else None,
    }
    if args.epoch_worker == "jax" and trainers:
        out["compiles"] = {
            "train_step": trainers[-1]._train_scan._cache_size(),  # the epoch scan, the demos' default
            "eval_step": trainers[-1]._eval_scan._cache_size(),
        }
    return out


# --------------------------------------------------------------------------- orchestration


def _run_worker(flag: str, framework: str, args, timeout: float) -> dict | None:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        path = handle.name
    command = [sys.executable, str(Path(__file__).resolve()), flag, framework, "--json-out", path,
               "--repeats", str(args.repeats), "--warmup", str(args.warmup),
               "--batch-size", str(args.batch_size), "--train-examples", str(args.train_examples),
               "--epochs", str(args.epochs)]
    if not args.compile:
        command.append("--no-compile")
    print(f"[{framework}] {flag[2:]} ...", file=sys.stderr, flush=True)
    try:
        completed = subprocess.run(command, cwd=ROOT, timeout=timeout)
        if completed.returncode != 0:
            print(f"[{framework}] {flag[2:]} failed with exit status {completed.returncode}", file=sys.stderr)
            return None
        return json.loads(Path(path).read_text())
    except subprocess.TimeoutExpired:
        print(f"[{framework}] {flag[2:]} timed out after {timeout:.0f} s", file=sys.stderr)
        return None
    finally:
        os.unlink(path)


def _merge_rounds(results: list) -> dict | None:
    """One framework's worker results of several rounds as one: samples pooled, medians recomputed."""
    if not results or any(r is None for r in results):
        return None
    merged = dict(results[0])
    merged["rounds"] = len(results)
    merged["variants"] = {}
    for name in results[0]["variants"]:
        entry = {"warmup_s": [r["variants"][name]["warmup_s"] for r in results]}
        for key in ("step_s", "step_cpu_s", "eval_s"):
            entry[key] = [x for r in results for x in r["variants"][name][key]]
            entry[key.replace("_s", "_median_s")] = float(np.median(entry[key]))
            entry[key.replace("_s", "_round_medians_s")] = [r["variants"][name][key.replace("_s", "_median_s")] for r in results]
        merged["variants"][name] = entry
    if "compiles" in results[0]:
        merged["compiles"] = [r["compiles"] for r in results]
    return merged


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:9.1f}"


def report(info: dict, steps: dict, epochs: dict, args) -> str:
    lines = []
    add = lines.append
    packages = info["packages"]
    add(f"SCS speed benchmark, {info['date']} (code {info['code']})")
    add(f"machine: {info['cpu']}, {info['cores']} cores, Python {info['python']}, "
        f"load average at start {info['load_start']}, at end {info['load_end']}")
    torch_threads = (steps.get("torch") or {}).get("threads")
    add("packages: " + ", ".join(f"{k} {v}" for k, v in packages.items())
        + (f"; torch threads {torch_threads}" if torch_threads else "")
        + (f"; XLA_FLAGS={info['xla_flags']!r}" if info["xla_flags"] else ""))
    add(f"Fashion-MNIST network (SCS 1-8-16-32, k3, MaxAbsPool 2/2 ceil, Linear 512-10), batch {args.batch_size}, "
        f"synthetic images; wall-clock median of {args.rounds} x {args.repeats} interleaved repeats "
        f"(rounds alternate the frameworks' processes) after {args.warmup} warm-up steps")
    add("")
    add(f"{'':8}{'':40}{'train step ms':>14}{'eval batch ms':>15}{'step CPU ms':>13}")
    for framework, result in steps.items():
        if result is None:
            add(f"{framework:8}(worker failed)")
            continue
        for name in ("scs", "scs_compiled", "plain", "unfold"):
            if name in result["variants"]:
                v = result["variants"][name]
                add(f"{framework:8}{VARIANT_LABELS[name]:40}{_ms(v['step_median_s']):>14}"
                    f"{_ms(v['eval_median_s']):>15}{_ms(v['step_cpu_median_s']):>13}")
    plain = {f: r["variants"]["plain"]["step_median_s"] for f, r in steps.items() if r}
    if not plain:
        return "\n".join(lines)
    floor_framework = min(plain, key=plain.get)
    floor = plain[floor_framework]
    add("")
    both = len(plain) == len(FRAMEWORKS)
    add(f"floor = fastest plain-conv training step{'' if both else ' (one framework only: not the real floor)'}: "
        f"{floor * 1e3:.1f} ms ({floor_framework})")
    add("")
    add(f"{'ratio of training steps':46}{'value':>8}{'target':>10}  met")
    for framework, result in steps.items():
        if result is None:
            continue
        v = result["variants"]
        floor_target, unfold_target = TARGETS[framework]
        rows = [
            ("SCS / floor", v["scs"]["step_median_s"] / floor, floor_target),
            ("SCS / same-framework plain conv", v["scs"]["step_median_s"] / v["plain"]["step_median_s"], None),
            ("SCS / unfold baseline", v["scs"]["step_median_s"] / v["unfold"]["step_median_s"], unfold_target),
        ]
        if "scs_compiled" in v:
            rows.insert(1, ("SCS fused kernels (opt-in) / floor", v["scs_compiled"]["step_median_s"] / floor,
                            floor_target))
        for label, value, target in rows:
            met = "" if target is None else ("yes" if value <= target else "NO")
            target_text = "" if target is None else f"<= {target:g}"
            add(f"{framework + ' ' + label:46}{value:8.2f}{target_text:>10}  {met}")
    if epochs:
        add("")
        add(f"demo epochs (demos.runner, real Fashion-MNIST, batch {args.batch_size}, {args.epochs} epochs, "
            "every train_steps/evaluate call timed, a chunk's time shared out over its steps):")
        for framework, result in epochs.items():
            if not result or not result.get("epochs"):
                add(f"  {framework}: no result" + (f" (exit status {result['status']})" if result else ""))
                continue
            per_epoch = len(result["step_s"]) // len(result["epochs"])
            for index, epoch in enumerate(result["epochs"]):
                step_times = result["step_s"][index * per_epoch:(index + 1) * per_epoch]
                median = float(np.median(step_times))
                expected = per_epoch * median
                test = epoch["seconds"] - epoch["train_seconds"]
                add(f"  {framework} epoch {epoch['epoch']}: training {epoch['train_seconds']:.1f} s = "
                    f"{epoch['train_seconds'] / expected:.3f} x ({per_epoch} steps x median step {median * 1e3:.0f} ms); "
                    f"sum of the step calls {sum(step_times):.1f} s (slowest {max(step_times):.2f} s); "
                    f"test pass {test:.1f} s; epoch {epoch['seconds']:.1f} s = "
                    f"{epoch['seconds'] / expected:.3f} x (steps x step time)")
            compiles = result.get("compiles")
            add(f"  {framework}: peak resident memory {result['peak_rss_bytes'] / 2**30:.2f} GiB"
                + (f"; compilations: train step {compiles['train_step']}, eval step {compiles['eval_step']}"
                   if compiles else ""))
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--framework", choices=("torch", "jax", "both"), default="both")
    parser.add_argument("--repeats", type=int, default=10, help="timed repetitions per variant and round")
    parser.add_argument("--rounds", type=int, default=2,
                        help="worker runs per framework, alternating frameworks; samples are pooled")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per variant first")
    parser.add_argument("--batch-size", type=int, default=REFERENCE.batch_size)
    parser.add_argument("--train-examples", type=int, default=8192, help="synthetic images batches are drawn from")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the real demo for the epoch check")
    parser.add_argument("--no-epoch", action="store_true", help="skip the demo epochs (memory, epoch time)")
    parser.add_argument("--no-compile", dest="compile", action="store_false",
                        help="skip torch's opt-in fused kernels (saves their compilation)")
    parser.add_argument("--parallel-runs", type=int, default=4,
                        help="K of the runs-per-hour section (benchmarks/runs_per_hour.py)")
    parser.add_argument("--no-runs-per-hour", dest="runs_per_hour", action="store_false",
                        help="skip the runs-per-hour section (step loop, epoch scan, K runs at once)")
    parser.add_argument("--out", default=None, help="report path (default results/benchmarks/speed_<date>.txt)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per worker")
    parser.add_argument("--worker", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    parser.add_argument("--epoch-worker", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    parser.add_argument("--json-out", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker or args.epoch_worker:
        if args.worker:
            result = (torch_worker if args.worker == "torch" else jax_worker)(args)
        else:
            result = epoch_worker(args)
        Path(args.json_out).write_text(json.dumps(result))
        return 0

    frameworks = FRAMEWORKS if args.framework == "both" else (args.framework,)
    info = machine()
    now = dt.datetime.now()
    info["date"] = now.isoformat(timespec="seconds")
    info["load_start"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    rounds = {f: [] for f in frameworks}
    for _ in range(args.rounds):  # torch, jax, torch, jax, ...: slow drifts of the load hit both
        for framework in frameworks:
            rounds[framework].append(_run_worker("--worker", framework, args, args.timeout))
    steps = {f: _merge_rounds(results) for f, results in rounds.items()}
    epochs = {} if args.no_epoch else {f: _run_worker("--epoch-worker", f, args, args.timeout) for f in frameworks}
    per_hour_args = argparse.Namespace(runs=args.parallel_runs, batch_size=args.batch_size, steps=8, repeats=3)
    per_hour = runs_per_hour.measure(frameworks, per_hour_args) if args.runs_per_hour else None
    info["load_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    text = report(info, steps, epochs, args)
    if per_hour is not None:
        text += "\n\n" + runs_per_hour.report(per_hour, per_hour_args)
    print(text)
    out = Path(args.out) if args.out else ROOT / "results" / "benchmarks" / f"speed_{now:%Y-%m-%d_%H%M}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    out.with_suffix(".json").write_text(json.dumps(
        {"machine": info, "args": vars(args), "steps": steps, "epochs": epochs, "runs_per_hour": per_hour},
        indent=1))
    print(f"\nsaved {out} and {out.with_suffix('.json').name}", file=sys.stderr)
    return 0 if all(steps.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

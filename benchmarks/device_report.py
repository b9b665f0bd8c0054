"""The text report of ``benchmarks/device_check.py``: its JSON result as tables, ratios and targets.

:func:`render` takes what ``device_check.run_check`` has gathered so far (it
is called after every section), so a report is complete up to the section
in progress; a missing or partial section reads as such.
"""

from __future__ import annotations

#: Targets of issue 13 (on a GPU): JAX 100-epoch run, 64 runs x 100 epochs (s), K=64 speed-up, torch SCS/plain.
JAX_RUN_S, JAX_64_RUNS_S, PARALLEL_64_GAIN, TORCH_SCS_OVER_PLAIN = 10.0, 60.0, 20.0, 1.5
_GIB = 2**30


def _gib(value) -> str:
    return "" if value is None else f"{value / _GIB:.2f} GiB"


def _num(value, fmt: str = ".1f") -> str:
    return "" if value is None else format(value, fmt)


def _met(value, target, below: bool = True) -> str:
    if value is None:
        return ""
    return "met" if (value <= target if below else value >= target) else "NOT met"


def _header(info: dict, sections: dict) -> list[str]:
    lines = [f"SCS device check, {info['date']} (code {info['code']})"]
    if info["dry_run"]:
        lines.append("DRY RUN: tiny sizes on this machine, to prove the check works; the numbers mean nothing.")
    lines.append(f"machine: {info['cpu']}, {info['cores']} cores, Python {info['python']}; "
                 f"GPU: {info['gpu'] or 'none (nvidia-smi)'}")
    lines.append("packages: " + ", ".join(f"{k} {v}" for k, v in info["packages"].items()))
    versions = sections.get("versions", {}).get("record", {})
    if "torch" in versions:
        t = versions["torch"]
        lines.append(f"torch {t['version']} on {t['device']} (CUDA {t['cuda']}, cuDNN {t['cudnn']}, "
                     f"{t['threads']} threads; TF32 defaults matmul {t['tf32_defaults']['matmul']}, "
                     f"cuDNN {t['tf32_defaults']['cudnn']})")
    if "jax" in versions:
        j = versions["jax"]
        lines.append(f"jax {j['version']}, backend {j['backend']}, devices {', '.join(j['devices'])} "
                     f"{j['device_kind']}; default matmul precision {j['default_matmul_precision']}")
    if "importable" in versions:
        missing = [name for name, ok in versions["importable"].items() if not ok]
        lines.append("not importable: " + (", ".join(missing) or "nothing"))
    s = info["sizes"]
    lines.append(f"synthetic Fashion-MNIST-shaped data: {s['train']} training + {s['test']} test images, "
                 f"batch {s['batch']}; medians of {s['repeats']} interleaved steps after {s['warmup']} warm-up; "
                 f"runs of {s['epochs']} epochs")
    return lines


def _parity(section: dict) -> list[str]:
    if not section:
        return []
    c = section.get("counts", {})
    lines = ["", f"parity tests ({', '.join(section['files'])}; torch's layer runs on {section['torch_device']}): "
             f"{section['status']}, {c.get('passed', 0)} passed, {c.get('failed', 0)} failed, "
             f"{c.get('error', 0)} errors, {c.get('skipped', 0)} skipped in {section['seconds']:.0f} s"]
    lines += [f"  FAILED {name}" for name in section.get("failed_tests", [])]
    lines += [f"  skipped: {reason}" for reason in section.get("skip_reasons", [])]
    lines.append("  not run here: the rest of parity_tests (data, demos, workers, results, packaging: "
                 "most need TFDS, which skips them without it)")
    return lines


def _step_rows(framework: str, pairs: dict) -> tuple[list[str], dict]:
    """Rows of the step table from a section's pair records; the SCS step of the first pair."""
    lines, steps = [], {}
    for key, pair in pairs.items():
        if isinstance(pair, str):
            lines.append(f"  {framework} {key}: {pair}")
            continue
        for name, v in pair.items():
            if name in steps:
                continue
            steps[name] = v["step_ms"]
            lines.append(f"  {framework:6}{name:22}{v['step_ms']:10.2f}{v['eval_ms']:10.2f}"
                         f"{_num(v['first_call_s'], '.2f'):>12}{_num(v['compile_s'], '.2f'):>11}{_gib(v.get('peak_bytes')):>11}")
        base, other = list(pair)
        if other != "plain":  # SCS / plain is its own line, with its target
            ratio = pair[other]["step_ms"] / pair[base]["step_ms"]
            lines.append(f"  {framework} {other} / {base}, side by side: {ratio:.2f} "
                         f"({pair[other]['step_ms']:.2f} ms against {pair[base]['step_ms']:.2f} ms)")
    return lines, steps


def _steps(sections: dict) -> list[str]:
    lines = ["", "training step, Fashion-MNIST network        step ms   eval ms  1st call s  compile s  peak mem"]
    for framework in ("torch", "jax"):
        section = sections.get(f"{framework}_steps")
        if not section:
            continue
        record = section["record"]
        lines.append(f"  {framework}: {section['status']} ({section['seconds']:.0f} s), device {record.get('device', '?')}")
        pairs = {k: v for k, v in record.items() if k.startswith("scs_vs_")}
        rows, steps = _step_rows(framework, pairs)
        lines += rows
        if "scs" in steps and "plain" in steps:
            ratio = steps["scs"] / steps["plain"]
            target = f"target <= {TORCH_SCS_OVER_PLAIN}: {_met(ratio, TORCH_SCS_OVER_PLAIN)}" if framework == "torch" else ""
            lines.append(f"  {framework} SCS / same-framework plain: {ratio:.2f}  {target}")
    return lines


def _epochs(sections: dict, epochs: int) -> list[str]:
    lines = ["", "one epoch (training steps + test pass)"]
    for framework, keys in (("torch", ("epoch",)), ("jax", ("epoch_step_loop", "epoch_scan"))):
        record = sections.get(f"{framework}_steps", {}).get("record", {})
        for key in keys:
            e = record.get(key)
            if e is None:
                lines.append(f"  {framework} {key}: not measured")
            elif isinstance(e, str):
                lines.append(f"  {framework} {key}: {e}")
            else:
                extra = (f"; first epoch {e['first_epoch_s']:.2f} s (compile ~{e['compile_s']:.2f} s), "
                         f"compiled {e['compiles']} time(s)" if "first_epoch_s" in e else "")
                lines.append(f"  {framework} {key}: {e['epoch_s']:.2f} s ({e['steps']} steps {e['train_s']:.2f} s, "
                             f"test {e['test_s']:.2f} s); a {epochs}-epoch run {e['projected_run_s']:.1f} s{extra}")
        ways = {key: record[key]["epoch_s"] for key in keys if isinstance(record.get(key), dict)}
        if framework == "jax" and ways:
            best = min(ways, key=ways.get)
            lines.append(f"  jax {epochs}-epoch run projected ({best}) {ways[best] * epochs:.1f} s: "
                         f"target < {JAX_RUN_S:g} s {_met(ways[best] * epochs, JAX_RUN_S)}")
    return lines


def _one_at_a_time(sections: dict, framework: str) -> float | None:
    """The sequential trainer's epoch (JAX: the scan where it exists, else the step loop), s."""
    record = sections.get(f"{framework}_steps", {}).get("record", {})
    for key in ("epoch_scan", "epoch_step_loop", "epoch"):
        if isinstance(record.get(key), dict):
            return record[key]["epoch_s"]
    return None


def _parallel(sections: dict, epochs: int) -> list[str]:
    lines = ["", f"parallel runs (one epoch of K runs together; runs per hour of {epochs}-epoch runs)"]
    for framework in ("jax", "torch"):
        section = sections.get(f"parallel_{framework}")
        if not section:
            continue
        lines.append(f"  {framework}: {section['status']}")
        single = _one_at_a_time(sections, framework)
        for runs, ran in section.get("runs", {}).items():
            r = ran.get("record", {})
            if "does_not_fit" in r:
                lines.append(f"    K={runs}: does not fit: {r['does_not_fit']}")
            elif "runs_per_hour" in r:
                gain = single and r["runs_per_hour"] / (3600 / (epochs * single))
                lines.append(f"    K={runs:<4} epoch {r['epoch_s']:.2f} s (first {r['first_epoch_s']:.2f} s), "
                             f"{r['runs_per_hour']:.0f} runs/h, {_num(gain, '.1f')}x one at a time, "
                             f"{_gib(r.get('peak_bytes'))} ({r.get('mode')})")
                if int(runs) == 64:
                    lines.append(f"      K=64: gain >= {PARALLEL_64_GAIN:g}x {_met(gain, PARALLEL_64_GAIN, below=False)}"
                                 + (f"; 64 runs x {epochs} epochs {epochs * r['epoch_s']:.0f} s, target < {JAX_64_RUNS_S:g} s "
                                    f"{_met(epochs * r['epoch_s'], JAX_64_RUNS_S)}" if framework == "jax" else ""))
            else:
                lines.append(f"    K={runs}: {ran.get('status')}")
    return lines


def render(result: dict) -> str:
    """The report as text."""
    sections, epochs = result["sections"], result["info"]["sizes"]["epochs"]
    lines = _header(result["info"], sections)
    lines += _parity(sections.get("parity", {}))
    lines += _steps(sections) + _epochs(sections, epochs) + _parallel(sections, epochs)
    lines += ["", "sections: " + "; ".join(f"{n} {s['status']} ({s['seconds']:.0f} s)"
                                           for n, s in result["sections"].items())]
    for name, section in result["sections"].items():  # why a section failed: its output's last line
        last = [line for line in (section.get("tail") or "").splitlines() if line.strip()][-1:]
        if section["status"].startswith(("failed", "timed out")) and last:
            lines.append(f"  {name}: ... {last[0].strip()[:300]}")
    if "exit_status" in result:
        lines.append(f"exit status {result['exit_status']}")
    return "\n".join(lines)

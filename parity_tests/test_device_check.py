"""``benchmarks/device_check.py``: it runs where TFDS is not installed, and its bookkeeping.

The whole check runs in CI as a dry run (``.ci/run``: tiny sizes, under the
no-TFDS simulation of :mod:`helpers.no_tfds`); here, in seconds: the
simulation itself, that everything the check imports and every parity test
file it runs can be loaded without TFDS, and how sections that fail or run
out of time end up in the exit status and the report.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import device_check, device_report  # noqa: E402

NO_TFDS = {**os.environ, "PYTHONPATH": str(ROOT / "parity_tests" / "helpers" / "no_tfds")}


def test_without_tfds_the_check_and_its_parity_tests_load():
    probe = (
        "import importlib.util, sys\n"
        "assert importlib.util.find_spec('tensorflow_datasets') is None\n"
        "assert importlib.util.find_spec('tensorflow') is None\n"
        "try:\n    import tensorflow_datasets\nexcept ModuleNotFoundError:\n    pass\n"
        "else:\n    raise AssertionError('tensorflow_datasets was imported')\n"
        "sys.path.insert(0, '.')\n"
        "import benchmarks.device_check\n"
        "loaded = [m for m in ('jax', 'torch') if m in sys.modules]\n"
        "assert not loaded, f'the parent process must leave the GPU to its sections, imported {loaded}'\n"
        "import benchmarks.device_sections, demos.data, demos.train_jax, demos.train_torch\n"
        "bad = [m for m in sys.modules if m.partition('.')[0] in ('tensorflow', 'tensorflow_datasets')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=NO_TFDS, check=True)
    files = [f"parity_tests/{name}" for name in device_check.PARITY_FILES]
    collected = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *files],
                               cwd=ROOT, env=NO_TFDS, capture_output=True, text=True)
    assert collected.returncode == 0, collected.stdout[-3000:]
    assert " tests collected" in collected.stdout


def test_dry_run_parity_files_are_among_the_full_ones():
    assert {name.partition("::")[0] for name in device_check.DRY_PARITY_FILES} <= set(device_check.PARITY_FILES)
    assert all((ROOT / "parity_tests" / name).is_file() for name in device_check.PARITY_FILES)


def _sections(parity="ok", failed=0, **others):
    sections = {"parity": {"status": parity, "seconds": 1.0, "counts": {"passed": 3, "failed": failed}}}
    sections.update({name: {"status": status, "seconds": 1.0} for name, status in others.items()})
    return sections


def test_exit_status():
    assert device_check.exit_status(_sections(jax_steps="ok", parallel_jax=device_check.NOT_AVAILABLE)) == 0
    assert device_check.exit_status(_sections(failed=1)) == 1
    assert device_check.exit_status(_sections(parity="timed out after 150 s")) == 3  # unproven, not failed
    assert device_check.exit_status(_sections(parity="failed (exit status 1)", failed=2)) == 1
    assert device_check.exit_status(_sections(failed=1, jax_steps="failed (exit status 1)")) == 1
    assert device_check.exit_status(_sections(torch_steps="timed out after 90 s")) == 3
    assert device_check.exit_status(_sections(parallel_torch="timed out after 40 s")) == 3


def test_a_child_out_of_time_is_stopped_and_reported():
    ran = device_check._child([sys.executable, "-c", "import time; print('started', flush=True); time.sleep(30)"], 2)
    assert ran["status"] == "timed out after 2 s" and ran["seconds"] < 20


def test_report_of_partial_sections(tmp_path):
    info = {"date": "d", "code": "c", "cpu": "cpu", "cores": 2, "python": "3", "gpu": None, "packages": {},
            "dry_run": True, "sizes": {"train": 8, "test": 4, "batch": 2, "repeats": 1, "warmup": 1, "epochs": 100}}
    step = {"step_ms": 2.0, "eval_ms": 1.0, "warmup_s": 1.0, "first_call_s": None, "compile_s": None}
    sections = {
        "parity": {"status": "timed out after 90 s", "seconds": 90, "counts": {"passed": 5}, "files": ["a.py"],
                   "torch_device": "cpu", "failed_tests": [], "skip_reasons": []},
        "torch_steps": {"status": "timed out after 60 s", "seconds": 60,
                        "record": {"device": "cpu", "scs_vs_plain": {"scs": step, "plain": dict(step, step_ms=1.0)}}},
        "jax_steps": {"status": "failed (exit status 1)", "seconds": 3, "record": {},
                      "tail": "Traceback (most recent call last):\nRuntimeError: no device\n"},
        "parallel_jax": {"status": device_check.NOT_AVAILABLE, "seconds": 0, "runs": {}},
    }
    text = device_report.render({"info": info, "sections": sections, "exit_status": 1})
    assert "parity tests (a.py" in text and "timed out after 90 s, 5 passed" in text
    assert "torch SCS / same-framework plain: 2.00" in text
    assert "torch epoch: not measured" in text and "jax epoch_scan: not measured" in text
    assert f"parallel_jax {device_check.NOT_AVAILABLE}" in text and text.endswith("exit status 1")
    assert "  jax_steps: ... RuntimeError: no device" in text

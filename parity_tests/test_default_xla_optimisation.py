"""The parity comparisons again, compiled as users compile: XLA's default optimisation level.

The suite compiles XLA with LLVM ``-O0`` to save time (``conftest.py``). That
changes how XLA's fused kernels become machine code and so the last bits of
JAX's results; the comparisons that carry the parity promise must hold for the
program users run too. This test runs, in a fresh process with XLA's own
defaults (``PARITY_XLA_DEFAULT_OPT=1``), the layer grid, the property tests
(hypothesis profile ``default-opt``: the same derandomized draws, 50 per
test), the pool-first layer and the whole networks. The XLA flags are read
once, when JAX starts its backend, hence the separate process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
FILES = ["test_layer_parity.py", "test_properties.py", "test_fused_pool.py", "test_network_parity.py"]


def _default_opt_environment() -> dict[str, str]:
    env = dict(os.environ)
    flags = [f for f in env.get("XLA_FLAGS", "").split() if "xla_backend_optimization_level" not in f]
    env["XLA_FLAGS"] = " ".join(flags)
    env["PARITY_XLA_DEFAULT_OPT"] = "1"
    env["HYPOTHESIS_PROFILE"] = "default-opt"
    return env


@pytest.mark.skipif(
    os.environ.get("PARITY_XLA_DEFAULT_OPT") == "1",
    reason="this session already compiles at XLA's default optimisation level",
)
def test_parity_at_xla_default_optimisation():
    command = [sys.executable, "-m", "pytest", *(str(HERE / f) for f in FILES),
               "-q", "-p", "no:cacheprovider"]
    result = subprocess.run(command, cwd=HERE.parent, env=_default_opt_environment(),
                            capture_output=True, text=True, timeout=3600)
    tail = (result.stdout + result.stderr)[-6000:]
    assert result.returncode == 0, f"parity at XLA's default optimisation level failed:\n{tail}"
    assert " passed" in result.stdout and " failed" not in result.stdout, tail

"""Session set-up of the parity suite: XLA flags, precision pins, hypothesis profiles, summaries.

What the tests share lives in :mod:`helpers` (no test file imports another).

Precision pins: GPUs run float32 matmuls/convolutions in TF32 by default in
both frameworks (10-bit mantissa), which would break the float32 tolerances;
they are pinned to full precision here so the suite means the same on GPU.
"""

from __future__ import annotations

import os
import signal
import zlib

# XLA compiles every new shape; on the 2-core CI machine that is most of the
# suite's time. LLVM optimisation level 0 cuts the suite's CPU time ~2.7x
# (measured: 4 min 40 s -> 1 min 41 s). It changes how XLA's fused kernels
# become machine code, not the HLO program: results differ in the last bits.
# test_default_xla_optimisation.py runs the layer grid, the property tests
# and the whole networks again in a process with XLA's own defaults, as users
# run JAX; PARITY_XLA_DEFAULT_OPT=1 runs the whole suite that way. Must be
# set before JAX creates its backend, i.e. before any JAX computation.
if os.environ.get("PARITY_XLA_DEFAULT_OPT") != "1" and "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from helpers import hypothesis_profiles  # noqa: E402
from helpers.parity import ILL_CONDITIONED, WORST  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
# The suite's tensors are tiny: with several intra-op threads on a shared
# 2-core machine torch spends ~100 ms per call spinning (measured), ~10x the
# work itself.
torch.set_num_threads(1)

hypothesis_profiles.load(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# A shell starts background jobs (`pytest ... &`, some CI runners) with SIGINT
# ignored, and Python then leaves it ignored: the tests that press Ctrl-C (in
# this process, or in demos started from it, which inherit it) would see
# nothing happen. Give the suite a terminal's Ctrl-C.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def rng(request) -> np.random.Generator:
    """A numpy generator seeded from the test's id, so every case is reproducible."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


def pytest_terminal_summary(terminalreporter):
    if ILL_CONDITIONED:
        terminalreporter.section("parity: ill-conditioned quantities, compared by accuracy")
        for what, count in sorted(ILL_CONDITIONED.items()):
            terminalreporter.write_line(f"{count:4d}  {what}")
    if WORST:
        terminalreporter.section("parity: worst relative errors measured")
        for (dtype, kind), (err, what) in sorted(WORST.items()):
            terminalreporter.write_line(f"{dtype:8s} {kind:7s} {err:.3e}  ({what})")

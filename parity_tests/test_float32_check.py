"""The float32 comparison itself (helpers.parity.check_float32): what passes, what fails.

Synthetic numbers stand for the quantities: a float64 ``truth``, torch's
float32 result with oneDNN and with its own kernels, and JAX's. The fallback
must accept JAX only where float32 cannot resolve the quantity (torch's worse
implementation more than tol/4 off) and JAX is at least as accurate as torch;
everything else must fail, naming the errors.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers.parity import ILL_CONDITIONED, WORST, check_float32

TOL = 1e-4


@pytest.fixture(autouse=True)
def _keep_session_summary():
    """The synthetic quantities stay out of the session's worst-error and fallback summaries."""
    worst, ill = dict(WORST), dict(ILL_CONDITIONED)
    yield
    WORST.clear(), WORST.update(worst)
    ILL_CONDITIONED.clear(), ILL_CONDITIONED.update(ill)
TRUTH = np.linspace(-1.0, 1.0, 11)


def off_by(relative: float) -> np.ndarray:
    """``TRUTH`` with its largest entry moved by ``relative`` (the suite's relative error)."""
    values = TRUTH.copy()
    values[-1] += relative
    return values


def check(jax_error, torch_error, native_error=None, what="synthetic"):
    native = None if native_error is None else (lambda: off_by(native_error))
    check_float32(off_by(jax_error), off_by(torch_error), TOL, what, lambda: TRUTH, kind="grad",
                  torch_native=native)


def test_direct_agreement_passes_without_the_fallback():
    before = dict(ILL_CONDITIONED)
    check(3e-5, -3e-5, native_error=1.0)  # 6e-5 apart: within 1e-4; native never consulted
    assert ILL_CONDITIONED == before


def test_well_conditioned_disagreement_fails():
    with pytest.raises(AssertionError, match=r"torch 1\.00e-05.*torch native conv 2\.00e-05.*JAX 2\.00e-04"):
        check(2e-4, -1e-5, native_error=2e-5)


def test_ill_conditioned_and_as_accurate_as_torch_passes_and_is_counted():
    check(2e-4, -1e-5, native_error=3e-4, what="synthetic ill-conditioned")  # 2e-4 <= 2 * 3e-4 + 5e-5
    assert ILL_CONDITIONED["synthetic ill-conditioned"] == 1


def test_ill_conditioned_but_less_accurate_than_torch_fails():
    with pytest.raises(AssertionError, match="not ill-conditioned"):
        check(8e-4, -1e-5, native_error=3e-4)  # 8e-4 > 2 * 3e-4 + 5e-5


def test_float32_that_does_not_represent_the_value_fails():
    with pytest.raises(AssertionError):
        check(0.5, -0.2, native_error=0.3)  # torch off by more than 1 %: an overflow, not rounding


def test_without_native_kernels_torch_alone_sets_the_bound():
    with pytest.raises(AssertionError):
        check(2e-4, -1e-5)
    check(2e-4, -1e-4, what="synthetic torch only")  # torch 1e-4 > tol/4: 2e-4 <= 2e-4 + 5e-5
    assert ILL_CONDITIONED["synthetic torch only"] == 1

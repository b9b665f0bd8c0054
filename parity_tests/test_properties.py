"""Property-based parity (hypothesis): torch and JAX agree on drawn layers and adversarial inputs.

Cost model: every new (configuration, input shape, dtype) costs JAX an XLA
compile of the forward + backward, 1-3 s on the 2-core CI machine, while a
new input of a known shape costs milliseconds. So:

* ``test_scs_parity`` and ``test_pool_parity`` (the profile's full example
  count) draw the structure from a fixed list (the shapes of
  ``test_layer_parity`` / ``test_pool_parity``, already compiled when the
  whole suite runs, plus a few odd ones: non-square kernels, stride pairs,
  stride > kernel, "valid", a padded input exactly the kernel's size) and
  spend their examples on values: adversarial inputs, weights, p and q.
* ``test_scs_parity_any_configuration`` and
  ``test_pool_parity_any_configuration`` draw the structure itself (batch,
  channels, groups incl. depthwise, non-square kernels, stride pairs,
  paddings, sizes down to invalid ones) with a tenth of the examples; an
  invalid draw must be rejected by both frameworks with the same kind of
  error (for the pool: exactly where ``torch.nn.MaxPool2d`` rejects it).

Inputs are built from a drawn recipe rather than element by element (arrays
of hundreds of floats are slow for hypothesis to generate and shrink): a
base (Gaussian, small integers with many ties, ±1, zeros), a global
magnitude (1, tiny, 1e30) and edits on regions (zero, a constant, a scale,
a sign flip).

Domain, and why:

* "tiny" is 1e-30 in float64 but 1e-10 in float32. Below ~1e-14 a float32
  cosine falls under eps = 1e-12, the output is ~eps^p and, for p > 3, its
  value and the gradient terms summed into d/dweight are subnormal, where
  XLA:CPU flushes to zero and torch keeps gradual underflow (measured with
  1e-30 inputs: d/dweight 8.5e-40 in torch, 0 in JAX; and a d/dweight of
  6e-34 built from terms near 1e-38, 1.3e-4 apart, torch 3e-6 from the
  float64 value, JAX 1.3e-4). 1e-10 still puts every patch norm under
  sqrt(eps) while keeping results normal.
* Layers whose every window sees one input element (a 1x1 kernel on one
  channel per group, or a one-channel-per-group input of 1x1 inside its
  padding) are left out: the patch then has a fixed direction (parallel to
  the kernel for a one-element kernel), cos = ±|x||k| / ((|x| + q)(|k| + q))
  up to a constant, and every gradient is the difference of two nearly
  equal terms (the direction terms cancel exactly), with condition numbers
  (|k| + q)/q and (|x| + q)/q, up to ~1e3 at magnitude 1 and ~1e33 at 1e30.
  Both frameworks then return their own rounding noise (measured: float32
  d/dweight 3.5e-4 apart, each ~5e-5 from the float64 value; float64 d/dx
  at |x| ~ 1e29 entirely noise, ~1e-45 where the true value is ~1e-61, 0 in
  one framework and 1e-49 in the other). test_layer_parity keeps a 1x1
  one-channel layer at magnitude 1 (measured worst over 30 seeds: 4.8e-5).
* float32 quantities that float32 itself cannot resolve to the tolerance
  are compared by accuracy against float64 (helpers.parity.check_float32):
  gradients where cosines land near 0 with exponents p < 1 (the
  convolution's rounding, ~1e-8 absolute, amplified p|c|^(p-1)-fold) and
  the sums that cancel (d/dq). Found this way once: outputs ~1e-23 at
  p = 2.9-3.2, where the power computed as exp(p·log(|cos| + eps)) carried
  a relative error of |p·log(...)|·2^-24 ≈ 4e-6 in each framework; both now
  compute it with pow (1 ulp). parity_tests/measure_float32_accuracy.py
  measures both frameworks' float32 errors over this space
  (results/accuracy/).
* float32 with magnitudes around 1e30: squares overflow, ‖s‖ = inf and
  cos = s·k / inf = 0 in both frameworks, so those patches give outputs and
  gradients 0 (not the scale-invariant cosine). Comparisons allow inf/NaN
  only at equal positions and compare the finite values at the tolerances.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx
from helpers.cases import POOL_CASES
from helpers.draws import (
    HUGE,
    STRUCTURES,
    ScsDraw,
    build_torch_layer,
    drawn_torch_layer,
    one_element_patches,
    scs_draws,
)
from helpers.hypothesis_profiles import examples
from helpers.parity import DTYPES, TORCH_DTYPES, compare_scs, jax_precision, jax_twin, output_shape
from helpers.pool import assert_identical, expected_size, jax_pool, torch_pool
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

import scs_jax
import scs_torch

FEW = examples(0.1)


def check_scs_draw(case: ScsDraw):
    layer = drawn_torch_layer(case)
    g = np.random.default_rng(case.g_seed).standard_normal(output_shape(layer, case.x.shape))
    compare_scs(layer, case.x, g, case.dtype, f"{case.structure}", nonfinite=True)



def _pinned(structure, dtype, x, p=None, zero_kernels=frozenset()):
    c_out = structure[2]
    return ScsDraw(structure, dtype, 0, tuple(p or [14.0] * c_out), 10.0, zero_kernels, x, 0)


_S = (1, 2, 2, (1, 3), (1, 2), (0, 1), 1, 4, 5)


# Pinned: cases that failed once (see the module docstring) or that the brief names.
@example(_pinned(_S, "float32", np.full((1, 2, 4, 5), HUGE)))  # squares overflow: all 0
@example(_pinned(_S, "float32", np.zeros((1, 2, 4, 5))))  # a working-tree torch backward gave 1/‖s‖ here
@example(_pinned(_S, "float64", np.full((1, 2, 4, 5), 1e-30), p=[18.5, 18.5]))  # eps^p, far from subnormal
@example(_pinned(_S, "float32", np.full((1, 2, 4, 5), 1e-10), p=[20.0, 10.0]))  # p = 4 and 1, cos ~ 1e-8
@example(_pinned(_S, "float64", np.full((1, 2, 4, 5), 2.0), zero_kernels=frozenset({0})))
@given(case=scs_draws(st.sampled_from(STRUCTURES)))
def test_scs_parity(case):
    check_scs_draw(case)


# --- free configurations --------------------------------------------------------

@st.composite
def scs_structures(draw):
    """Any configuration, valid or not (sizes below the kernel, "same" with stride > 1, indivisible groups)."""
    groups = draw(st.integers(1, 3))
    c_in = groups * draw(st.integers(1, 2))
    if draw(st.booleans()):
        groups = c_in  # depthwise
    c_out = groups * draw(st.integers(1, 2)) + draw(st.sampled_from([0, 0, 0, 1]))
    kernel = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    stride = draw(st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    padding = draw(st.one_of(
        st.integers(0, 2), st.tuples(st.integers(0, 2), st.integers(0, 2)), st.sampled_from(["valid", "same"])
    ))
    if padding == "same":
        pads = (kernel[0] - 1, kernel[1] - 1)
    elif padding == "valid":
        pads = (0, 0)
    else:
        pads = (2 * padding, 2 * padding) if isinstance(padding, int) else (2 * padding[0], 2 * padding[1])
    # sizes from one below the smallest valid one (the padded input one short of the kernel)
    h = max(1, kernel[0] - pads[0] + draw(st.integers(-1, 3)))
    w = max(1, kernel[1] - pads[1] + draw(st.integers(-1, 3)))
    return (draw(st.integers(1, 3)), c_in, c_out, kernel, stride, padding, groups, h, w)


def _outcome(call):
    try:
        return call(), None
    except (TypeError, ValueError) as error:
        return None, error


@settings(max_examples=FEW)
@given(case=scs_draws(scs_structures()))
def test_scs_parity_any_configuration(case):
    n, c_in, c_out, k, stride, padding, groups, h, w = case.structure
    torch_layer, torch_error = _outcome(lambda: build_torch_layer(case.structure, case.dtype))
    with jax_precision(case.dtype):
        _, jax_error = _outcome(lambda: scs_jax.SharpenedCosineSimilarity(
            c_in, c_out, k, stride=stride, padding=padding, feature_group_count=groups,
            param_dtype=jnp.dtype(case.dtype), rngs=nnx.Rngs(0),
        ))
    assert type(torch_error) is type(jax_error), f"construction: torch {torch_error!r}, jax {jax_error!r}"
    if torch_error is not None:
        return
    assume(not one_element_patches(case.structure))
    _, torch_error = _outcome(lambda: torch_layer(torch.zeros((n, c_in, h, w), dtype=TORCH_DTYPES[case.dtype])))
    if torch_error is not None:
        with jax_precision(case.dtype):
            jax_layer = jax_twin(torch_layer, case.dtype)
            # eager: the bad input is rejected before anything is compiled
            _, jax_error = _outcome(lambda: jax_layer(jnp.zeros((n, h, w, c_in), case.dtype)))
        assert type(torch_error) is type(jax_error), f"call: torch {torch_error!r}, jax {jax_error!r}"
        assert str(torch_error).startswith("x:") and str(jax_error).startswith("x:"), (torch_error, jax_error)
        return
    check_scs_draw(case)


# --- MaxAbsPool -------------------------------------------------------------------

@st.composite
def pool_inputs(draw, shape):
    """Ties everywhere: small integers, equal magnitudes with both signs, zeros, ±inf."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    base = draw(st.sampled_from(["small integers", "signs", "gaussian", "zeros"]))
    if base == "small integers":
        x = rng.integers(-2, 3, shape).astype(np.float64)
    elif base == "signs":
        x = rng.choice([-1.0, 1.0], shape)
    elif base == "gaussian":
        x = rng.standard_normal(shape)
    else:
        x = np.zeros(shape)
    x *= draw(st.sampled_from([1.0, 1e-30, 1e30]))  # all normal numbers in float32 too
    if draw(st.booleans()):
        x[rng.random(shape) < 0.1] = np.inf
        x[rng.random(shape) < 0.1] = -np.inf
    return x


class PoolDraw(NamedTuple):
    kernel: tuple
    stride: tuple
    ceil_mode: bool
    dtype: str
    x: np.ndarray  # NCHW
    g_seed: int  # upstream gradient: integers in [-9, 9] from this seed


def check_pool_draw(case: PoolDraw):
    (kh, kw), (sh, sw), ceil_mode, dtype, x = case.kernel, case.stride, case.ceil_mode, case.dtype, case.x
    out_shape = (*x.shape[:2], expected_size(x.shape[2], kh, sh, ceil_mode), expected_size(x.shape[3], kw, sw, ceil_mode))
    # integer upstream gradients: every routed sum is exact, so the gradients must be identical
    g = np.random.default_rng(case.g_seed).integers(-9, 10, out_shape).astype(np.float64)
    out_t, gx_t = torch_pool(x, g, case.kernel, case.stride, ceil_mode, dtype)
    out_j, gx_j = jax_pool(x, g, case.kernel, case.stride, ceil_mode, dtype)
    assert out_t.shape == out_shape
    assert_identical(out_j, out_t, f"{dtype} pool output")
    assert_identical(gx_j, gx_t, f"{dtype} pool d/dx")


@st.composite
def fixed_pool_draws(draw):
    kernel, stride, ceil_mode, h, w = draw(st.sampled_from(POOL_CASES))
    return PoolDraw((kernel,) * 2, (stride,) * 2, ceil_mode, draw(st.sampled_from(DTYPES)),
                    draw(pool_inputs((2, 3, h, w))), draw(st.integers(0, 2**32 - 1)))


_TIES = np.array([[1.0, -1.0, 2.0, -2.0], [0.0, 0.0, -2.0, 2.0], [np.inf, -np.inf, 0.0, -0.0], [-np.inf, 3.0, -0.0, 0.0]])


@example(PoolDraw((2, 2), (2, 2), False, "float32", np.broadcast_to(_TIES, (2, 3, 4, 4)).copy(), 0))
@example(PoolDraw((3, 3), (2, 2), True, "float64", np.broadcast_to(np.tile(_TIES, (2, 2))[:7, :8], (2, 3, 7, 8)).copy(), 1))
@given(case=fixed_pool_draws())
def test_pool_parity(case):
    check_pool_draw(case)


@settings(max_examples=FEW)
@given(
    kernel=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    ceil_mode=st.booleans(),
    size=st.tuples(st.integers(1, 7), st.integers(1, 7)),
    dtype=st.sampled_from(DTYPES),
    data=st.data(),
)
def test_pool_parity_any_configuration(kernel, stride, ceil_mode, size, dtype, data):
    shape = (1, 2, *size)
    # nn.MaxPool2d's rule: no window without ceil_mode when the input is smaller than
    # the kernel; with it a window that starts inside the input is kept
    try:
        torch.nn.MaxPool2d(kernel, stride, ceil_mode=ceil_mode)(torch.zeros(shape))
        max_pool2d_refuses = False
    except RuntimeError:
        max_pool2d_refuses = True
    if max_pool2d_refuses:
        for run in (
            lambda: scs_torch.MaxAbsPool2d(kernel, stride, ceil_mode)(torch.zeros(shape)),
            lambda: scs_jax.MaxAbsPool(kernel, stride, ceil_mode)(jnp.zeros((1, *size, 2))),
        ):
            _, error = _outcome(run)
            assert isinstance(error, ValueError) and str(error).startswith("x:"), repr(error)
        return
    x = data.draw(pool_inputs(shape), label="x")
    check_pool_draw(PoolDraw(kernel, stride, ceil_mode, dtype, x, data.draw(st.integers(0, 2**32 - 1), label="g seed")))

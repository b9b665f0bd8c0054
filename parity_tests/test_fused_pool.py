"""SCS + MaxAbsPool computed pool first (``layer(x, pool=...)``): parity and equivalence.

``sharpened_cosine_similarity_max_abs_pool`` pools the cosines and sharpens
the pooled values only; the demo networks run every SCS layer that is
followed by a MaxAbsPool this way (``PoolFusingSequential``). Checked here:

* torch vs JAX, fused, at the foundation's tolerances (outputs and the
  gradients of the input, weight, p and q), on a grid of layers and pools
  (partial ``ceil_mode`` windows, overlapping windows, stride-1 pools,
  groups, depthwise, "same") and on hypothesis draws with adversarial inputs;
* fused vs two-step (``pool(layer(x))``) in each framework: the same values
  and, in float64, the same gradients, ties included;
* the same errors in both frameworks for bad pool arguments;
* the demo networks' fused forward equals the layer-by-layer one.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from helpers.draws import ScsDraw, adversarial_arrays, drawn_torch_layer, one_element_patches
from helpers.hypothesis_profiles import examples
from helpers.parity import (
    DTYPES,
    P_PARAM_RANGE,
    TOLERANCES,
    TORCH_DTYPES,
    assert_close,
    compare_scs,
    jax_precision,
    jax_twin,
    make_torch_scs,
    nchw_to_nhwc,
    nhwc_to_nchw,
    output_shape,
    relative_error,
    torch_scs_run,
)
from hypothesis import example, given, settings
from hypothesis import strategies as st

import scs_jax
import scs_torch
from demos.architectures import FASHION_MNIST, Architecture, Flatten, Linear, MaxAbsPool, SCS
from demos.build_jax import build_jax_model
from demos.build_torch import build_torch_model
from demos.transfer import torch_to_jax

# ((batch, in, out, kernel, stride, padding, groups, H, W), (pool kernel, pool stride, ceil_mode))
CASES = [
    ((2, 1, 8, 3, 1, 0, 1, 9, 9), (2, 2, True)),  # the demo's first layer; 7x7 -> partial windows
    ((2, 8, 16, 3, 1, 1, 1, 7, 7), (2, 2, True)),
    ((2, 4, 6, 3, 2, 1, 1, 9, 8), (2, 2, False)),  # floor mode drops the last row
    ((2, 4, 6, 3, 1, 1, 2, 7, 8), (3, 2, True)),  # overlapping windows, groups
    ((1, 8, 8, 3, 1, 1, 8, 6, 5), (2, 1, False)),  # depthwise, stride-1 pool
    ((1, 2, 3, 4, 1, "same", 1, 6, 7), (3, 3, True)),  # even kernel "same"
    ((2, 3, 4, 3, 1, "same", 1, 7, 6), ((2, 3), (2, 1), False)),  # pool pairs
    ((1, 6, 9, 3, 2, 1, 3, 9, 9), (2, 2, True)),
    # outputs smaller than the pool's kernel: ceil_mode keeps the window that starts
    # inside, as nn.MaxPool2d does (both pooled to 1x1)
    ((2, 2, 4, 3, 1, 0, 1, 3, 4), (2, 2, True)),  # layer output 1x2
    ((1, 3, 6, 3, 1, 0, 3, 4, 4), (3, 2, True)),  # 2x2 under a 3x3 window, groups
]
SMALL_OUTPUT_CASES = CASES[-2:]


def _case_id(case):
    (n, i, o, k, s, pad, g, h, w), (pk, ps, ceil) = case
    return f"n{n}-c{i}to{o}-k{k}-s{s}-p{pad}-g{g}-{h}x{w}-pool{pk}s{ps}{'c' if ceil else 'f'}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_fused_outputs_and_gradients(case, dtype, rng):
    (n, c_in, c_out, k, stride, padding, groups, h, w), pool = case
    layer = make_torch_scs(rng, dtype, c_in, c_out, k, stride, padding, groups)
    x = rng.standard_normal((n, c_in, h, w))
    g = rng.standard_normal(output_shape(layer, x.shape, pool))
    expected = compare_scs(layer, x, g, dtype, _case_id(case), pool=pool)
    for name in ("x", "weight", "p", "q"):
        assert np.max(np.abs(expected[name])) > 0, f"d/d{name} is identically zero"


# --- fused vs two-step, each framework ---------------------------------------------

def _inputs(kind, shape, rng):
    if kind == "gaussian":
        return rng.standard_normal(shape)
    x = rng.integers(-2, 3, shape).astype(np.float64)  # equal patches, zero patches: ties in the cosines
    x[..., : shape[-1] // 2] = 0.0
    return x


def _torch_both(layer, pool, x, g):
    def run(fused):
        xt = torch.tensor(x, requires_grad=True)
        if fused:
            out = layer(xt, pool=pool)
        else:
            out = pool(layer(xt))
        grads = torch.autograd.grad(out, [xt, layer.weight, layer.p, layer.q], torch.tensor(g))
        return [out.detach().numpy()] + [gr.numpy() for gr in grads]

    return run(True), run(False)


def _jax_both(layer, pool, x, g):
    graphdef, state = nnx.split(layer)

    def run(fused):
        def forward(state, x):
            module = nnx.merge(graphdef, state)
            return module(x, pool=pool) if fused else pool(module(x))

        out, vjp = jax.vjp(forward, state, jnp.asarray(nchw_to_nhwc(x)))
        g_state, g_x = vjp(jnp.asarray(nchw_to_nhwc(g)))
        g_state = nnx.to_pure_dict(g_state)
        return [nhwc_to_nchw(np.asarray(out)), nhwc_to_nchw(np.asarray(g_x)),
                np.asarray(g_state["kernel"]), np.asarray(g_state["p"]), np.asarray(g_state["q"])]

    return run(True), run(False)


def assert_fused_equals_two_step_float64(layer, pool, x, g):
    """In each framework, the fused and the two-step forms' output and gradients agree to 1e-12 (float64 ``layer``)."""
    names = ("output", "d/dx", "d/dweight", "d/dp", "d/dq")
    fused, two_step = _torch_both(layer, scs_torch.MaxAbsPool2d(*pool), x, g)
    for name, a, b in zip(names, fused, two_step):
        assert_close(a, b, 1e-12, f"torch fused vs two-step {name}")
    with jax_precision("float64"):
        fused, two_step = _jax_both(jax_twin(layer, "float64"), scs_jax.MaxAbsPool(*pool), x, g)
    for name, a, b in zip(names, fused, two_step):
        assert_close(a, b, 1e-12, f"JAX fused vs two-step {name}")


@pytest.mark.parametrize("inputs", ["gaussian", "ties"])
@pytest.mark.parametrize("case", CASES[:5], ids=_case_id)
def test_fused_equals_two_step_float64(case, inputs, rng):
    (n, c_in, c_out, k, stride, padding, groups, h, w), pool = case
    layer = make_torch_scs(rng, "float64", c_in, c_out, k, stride, padding, groups)
    x = _inputs(inputs, (n, c_in, h, w), rng)
    g = rng.standard_normal(output_shape(layer, x.shape, pool))
    assert_fused_equals_two_step_float64(layer, pool, x, g)


MEMORY_FORMATS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}


@pytest.mark.parametrize("layouts", [("channels_last", "contiguous"), ("contiguous", "channels_last"),
                                     ("channels_last", "channels_last")], ids="x-{0[0]}-grad-{0[1]}".format)
@pytest.mark.parametrize("case", CASES[:5], ids=_case_id)
def test_fused_gradients_whatever_the_memory_layouts(case, layouts, rng):
    """The fused backward computes in the memory order of its pooled indices; an input and an
    upstream gradient laid out differently (the demos train channels-last on CPU, and the next
    layer may hand back a contiguous gradient) give the two-step form's gradients (float64)."""
    (n, c_in, c_out, k, stride, padding, groups, h, w), pool = case
    layer = make_torch_scs(rng, "float64", c_in, c_out, k, stride, padding, groups)
    x = torch.tensor(rng.standard_normal((n, c_in, h, w)))
    x = x.contiguous(memory_format=MEMORY_FORMATS[layouts[0]])
    g = torch.tensor(rng.standard_normal(output_shape(layer, tuple(x.shape), pool)))
    g = g.contiguous(memory_format=MEMORY_FORMATS[layouts[1]])
    torch_pool = scs_torch.MaxAbsPool2d(*pool)
    results = []
    for fused in (True, False):
        xt = x.clone(memory_format=torch.preserve_format).requires_grad_()
        out = layer(xt, pool=torch_pool) if fused else torch_pool(layer(xt))
        results.append(torch.autograd.grad(out, [xt, layer.weight, layer.p, layer.q], g))
    for name, a, b in zip(("d/dx", "d/dweight", "d/dp", "d/dq"), *results):
        assert_close(a.numpy(), b.numpy(), 1e-12, f"torch fused vs two-step {name}, {layouts}")



class _NoGradient(torch.autograd.Function):
    """Identity whose backward passes no gradient on (``None``)."""

    @staticmethod
    def forward(t):
        return t.clone()

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, grad):
        return None


def test_fused_backward_reached_by_no_gradient(rng):
    """Gradients are not materialized for the fused pool (no zeros of the cosines' full size);
    a node after it that passes none on leaves the inputs without one instead of failing."""
    dot = torch.tensor(rng.standard_normal((2, 1, 4, 7, 7)), requires_grad=True)
    norm = torch.tensor(rng.random((2, 1, 1, 7, 7)) + 1.0, requires_grad=True)
    pooled = scs_torch.functional._CosineMaxAbsPool.apply(dot, norm, (2, 2), (2, 2), True)[0]
    grads = torch.autograd.grad(_NoGradient.apply(pooled).sum(), [dot, norm], allow_unused=True)
    assert grads == (None, None)


def within_one_ulp(actual, expected) -> np.ndarray:
    """Elementwise: ``actual`` and ``expected`` at most one unit in the last place apart.

    The two forms sharpen tensors of different widths, and torch's ``pow``
    rounds up to 1 ulp differently in its vectorised loop and in the scalar
    loop that finishes each row (measured: 3 of 1,152 float32 outputs).
    """
    actual, expected = np.asarray(actual), np.asarray(expected)
    return np.abs(actual - expected) <= np.spacing(np.maximum(np.abs(actual), np.abs(expected)))


def test_fused_equals_two_step_float32_values(rng):
    """float32 too: the same output values to the last bit (the pooled element is sharpened by the same operations)."""
    layer = make_torch_scs(rng, "float32", 4, 8, 3, 1, 1, 1)
    pool = (2, 2, True)
    x = rng.standard_normal((4, 4, 11, 11)).astype(np.float32)
    with torch.no_grad():
        xt = torch.from_numpy(x)
        fused = layer(xt, pool=scs_torch.MaxAbsPool2d(*pool)).numpy()
        two_step = scs_torch.MaxAbsPool2d(*pool)(layer(xt)).numpy()
    assert within_one_ulp(fused, two_step).all()
    jax_layer = jax_twin(layer, "float32")
    xj = jnp.asarray(nchw_to_nhwc(x))
    fused = np.asarray(jax_layer(xj, pool=scs_jax.MaxAbsPool(*pool)))
    two_step = np.asarray(scs_jax.MaxAbsPool(*pool)(jax_layer(xj)))
    assert_close(fused, two_step, 1e-6, "JAX float32 fused vs two-step output")


# --- bad pool arguments: the same errors -----------------------------------------

def test_bad_pool_arguments_rejected_alike(rng):
    layer = make_torch_scs(rng, "float32", 2, 4, 3)
    jax_layer = jax_twin(layer, "float32")
    x = rng.standard_normal((1, 2, 6, 6)).astype(np.float32)
    xt, xj = torch.from_numpy(x), jnp.asarray(nchw_to_nhwc(x))
    with pytest.raises(TypeError, match="pool: expected a MaxAbsPool2d"):
        layer(xt, pool=torch.nn.MaxPool2d(2))
    with pytest.raises(TypeError, match="pool: expected a MaxAbsPool"):
        jax_layer(xj, pool=nnx.Linear(1, 1, rngs=nnx.Rngs(0)))
    for module in (scs_torch.MaxAbsPool2d, scs_jax.MaxAbsPool):
        with pytest.raises(TypeError, match="ceil_mode: expected a bool, got 'no'"):
            module(2, ceil_mode="no")
    with pytest.raises(TypeError, match="ceil_mode: expected a bool"):
        scs_torch.max_abs_pool(xt, 2, ceil_mode=1)
    with pytest.raises(TypeError, match="ceil_mode: expected a bool"):
        scs_jax.max_abs_pool(xj, 2, ceil_mode="yes")
    for kwargs, error, text in [
        ({"pool_kernel_size": 0}, ValueError, "pool_kernel_size"),
        ({"pool_kernel_size": 2, "pool_stride": (1, 0)}, ValueError, "pool_stride"),
        ({"pool_kernel_size": 2.5}, TypeError, "pool_kernel_size"),
        ({"ceil_mode": "no"}, TypeError, "ceil_mode: expected a bool, got 'no'"),
        ({"pool_kernel_size": 5}, ValueError, r"pool_kernel_size: expected at most the layer's output size \(4, 4\)"),
    ]:
        args_t = (xt, layer.weight, layer.p, layer.q)
        args_j = (xj, jax_layer.kernel[...], jax_layer.p[...], jax_layer.q[...])
        with pytest.raises(error, match=text):
            scs_torch.sharpened_cosine_similarity_max_abs_pool(*args_t, **kwargs)
        with pytest.raises(error, match=text):
            scs_jax.sharpened_cosine_similarity_max_abs_pool(*args_j, **kwargs)


# --- pools larger than the layer's output: torch.nn.MaxPool2d's rule ----------------

@pytest.mark.parametrize("case", SMALL_OUTPUT_CASES, ids=_case_id)
def test_pool_larger_than_the_layers_output_float64(case, rng):
    """Parity is test_fused_outputs_and_gradients'; here the 1x1 result and fused = two-step."""
    (n, c_in, c_out, k, stride, padding, groups, h, w), pool = case
    layer = make_torch_scs(rng, "float64", c_in, c_out, k, stride, padding, groups)
    x = rng.standard_normal((n, c_in, h, w))
    g = rng.standard_normal(output_shape(layer, x.shape, pool))
    assert g.shape[2:] == (1, 1)
    assert_fused_equals_two_step_float64(layer, pool, x, g)


def test_pool_with_no_window_in_the_layers_output_rejected_alike(rng):
    """Layer output 2x2, pool 3x3 with stride 1: no window starts inside even with ceil_mode."""
    layer = make_torch_scs(rng, "float32", 2, 4, 3)
    jax_layer = jax_twin(layer, "float32")
    x = rng.standard_normal((1, 2, 4, 4)).astype(np.float32)
    with pytest.raises(RuntimeError):
        torch.nn.MaxPool2d(3, 1, ceil_mode=True)(torch.zeros(1, 4, 2, 2))
    text = r"^pool_kernel_size: expected at most the layer's output size \(2, 2\) plus pool_stride - 1 \(2, 2\)"
    with pytest.raises(ValueError, match=text):
        layer(torch.from_numpy(x), pool=scs_torch.MaxAbsPool2d(3, 1, ceil_mode=True))
    with pytest.raises(ValueError, match=text):
        jax_layer(jnp.asarray(nchw_to_nhwc(x)), pool=scs_jax.MaxAbsPool(3, 1, ceil_mode=True))


# --- property: adversarial inputs, drawn layers and pools ----------------------------

# Layers whose output is at least 2x2, from test_layer_parity's cases and a few odd ones.
FUSED_STRUCTURES = [
    (2, 1, 4, 3, 1, 0, 1, 7, 6),
    (1, 2, 4, 3, 1, 1, 1, 8, 8),
    (2, 4, 6, 3, 2, 1, 1, 9, 8),
    (2, 4, 6, 3, 1, 1, 2, 7, 8),
    (1, 8, 8, 3, 1, 1, 8, 6, 5),
    (1, 2, 2, (1, 3), (1, 2), (0, 1), 1, 4, 5),
    (1, 3, 6, (4, 1), 1, "same", 3, 4, 4),
]
POOLS = [(2, 2, True), (2, 2, False), (3, 2, True), (2, 1, False), ((1, 2), (1, 2), True)]
assert not any(one_element_patches(s) for s in FUSED_STRUCTURES)


@st.composite
def fused_draws(draw):
    structure = draw(st.sampled_from(FUSED_STRUCTURES))
    dtype = draw(st.sampled_from(DTYPES))
    n, c_in, c_out, *_, h, w = structure
    case = ScsDraw(
        structure,
        dtype,
        draw(st.integers(0, 2**31 - 1)),
        tuple(draw(st.lists(st.floats(*P_PARAM_RANGE), min_size=c_out, max_size=c_out))),
        draw(st.floats(3.0, 30.0)),
        frozenset(draw(st.sets(st.integers(0, c_out - 1), max_size=c_out))),
        draw(adversarial_arrays((n, c_in, h, w), dtype)),
        draw(st.integers(0, 2**32 - 1)),
    )
    return case, draw(st.sampled_from(POOLS))


_S = (1, 2, 2, (1, 3), (1, 2), (0, 1), 1, 4, 5)
_TINY_X = np.random.default_rng(0).standard_normal((1, 2, 4, 5)) * 1e-30


_COLUMN_X = np.zeros((2, 4, 9, 8))
_COLUMN_X[0, 0, :8, 0] = 3.0  # identical patches down a column: pool windows tied in exact arithmetic


def compare_fused(layer, case, g, pool):
    """:func:`compare_scs` with the pool fused in both frameworks.

    At a window tied in exact arithmetic (identical patches) the gradient may
    go to any of the tied elements. torch's convolution can round identical
    patches apart by a last bit depending on their position, so its fused form
    (which pools the cosines) then takes the later element, while its two-step
    form (equal sharpened values) and JAX (identical cosines) take the first.
    Only where torch's two forms route differently (their input gradients
    differ beyond the parity tolerance) is JAX held to torch's two-step form
    instead, at the same tolerances; :func:`assert_valid_max_abs_pool` then
    checks that the forms differ only at ties.
    """
    label = f"{case.structure} pool {pool}"
    try:
        compare_scs(layer, case.x, g, case.dtype, label, nonfinite=True, pool=pool)
    except AssertionError:
        fused = torch_scs_run(layer, case.x, g, pool)["x"]
        two_step = torch_scs_run(layer, case.x, g, pool, two_step=True)["x"]
        if not relative_error(fused, two_step) > TOLERANCES[case.dtype]["grad"]:
            raise
        compare_scs(layer, case.x, g, case.dtype, label + " (torch: pool after the layer)",
                    nonfinite=True, pool=pool, torch_two_step=True)


# Pinned: found by this test (|cos| far below eps: every nonzero output is ±eps^p,
# the two-step form keeps +eps^p, the fused form the sign of the largest |cos|).
@example(draw=(ScsDraw(_S, "float64", 0, (5.0, 5.0), 3.0, frozenset(), _TINY_X, 0), (2, 2, True)))
@example(draw=(ScsDraw(_S, "float32", 0, (5.0, 20.0), 3.0, frozenset(), _TINY_X * 1e20, 0), (2, 2, True)))
# Pinned: found by the exploration profile (a window tied in exact arithmetic, see compare_fused).
@example(draw=(ScsDraw((2, 4, 6, 3, 2, 1, 1, 9, 8), "float64", 0, (5.0,) * 6, 3.0, frozenset(),
                       _COLUMN_X, 0), (2, 2, True)))
@settings(max_examples=examples(0.5))
@given(draw=fused_draws())
def test_fused_parity_property(draw):
    case, pool = draw
    layer = drawn_torch_layer(case)
    g = np.random.default_rng(case.g_seed).standard_normal(output_shape(layer, case.x.shape, pool))
    compare_fused(layer, case, g, pool)
    with torch.no_grad():
        xt = torch.tensor(case.x, dtype=TORCH_DTYPES[case.dtype])
        fused = layer(xt, pool=scs_torch.MaxAbsPool2d(*pool)).numpy()
        unpooled = layer(xt)
        two_step = scs_torch.MaxAbsPool2d(*pool)(unpooled).numpy()
    assert_valid_max_abs_pool(fused, two_step, unpooled.numpy(), pool)


def _windows(unpooled, pool, shape):
    """Every pooled position's window of ``unpooled`` (NCHW), flattened: ``(N, C, H', W', k)`` list."""
    (kh, kw), (sh, sw) = (scs_torch.shapes.pair(name, v) for name, v in zip(("kernel", "stride"), pool[:2]))
    rows = []
    for i in range(shape[2]):
        cols = []
        for j in range(shape[3]):
            window = unpooled[:, :, i * sh : i * sh + kh, j * sw : j * sw + kw]
            cols.append(window.reshape(*window.shape[:2], -1))
        rows.append(cols)
    return rows


def assert_valid_max_abs_pool(fused, two_step, unpooled, pool):
    """``fused`` is a MaxAbsPool of ``unpooled``, and equals ``two_step`` wherever the choice is unique.

    In exact arithmetic the two forms choose the same element; in floating
    point the sharpening can map different cosines to values of equal
    magnitude (|c| + eps rounds to eps for |c| far below eps; p < 1 in
    float32), where the two-step form breaks the tie by sign (+a) and
    position and the fused form takes the largest |cos| (same magnitude,
    possibly the other sign). Values are compared to the last bit
    (:func:`within_one_ulp`), and a window is a tie when more than one of its
    magnitudes lies within an ulp of the largest.
    """
    assert fused.shape == two_step.shape
    windows = _windows(unpooled, pool, fused.shape)
    ties = 0
    for i, cols in enumerate(windows):
        for j, window in enumerate(cols):
            magnitude = np.max(np.abs(window), axis=-1)
            assert within_one_ulp(np.abs(fused[:, :, i, j]), magnitude).all(), "fused magnitude != window's largest"
            np.testing.assert_array_equal(np.abs(two_step[:, :, i, j]), magnitude)
            member = within_one_ulp(window, fused[:, :, i, j][..., None]).any(-1)
            assert member.all(), "a fused value that is not an element of its window"
            unique = within_one_ulp(np.abs(window), magnitude[..., None]).sum(-1) == 1
            assert within_one_ulp(fused[:, :, i, j][unique], two_step[:, :, i, j][unique]).all(), (
                "fused != two-step where the window's largest magnitude is unique")
            ties += int((~unique).sum())
    return ties


# --- the demo networks ----------------------------------------------------------------

SMALL = Architecture(
    name="small", input_shape=(2, 9, 9), num_classes=3,
    layers=(SCS(2, 4, 3, padding=1), MaxAbsPool(), SCS(4, 6, 3, padding=1, groups=2),
            MaxAbsPool(3, 2), Flatten(), Linear(24, 3)),
)


@pytest.mark.parametrize("architecture", [FASHION_MNIST, SMALL], ids=lambda a: a.name)
def test_demo_networks_fuse_and_match_layer_by_layer(architecture, rng):
    torch.manual_seed(0)
    model = build_torch_model(architecture, dtype=torch.float64)
    c, h, w = architecture.input_shape
    x = torch.tensor(rng.standard_normal((3, c, h, w)))
    calls = []
    hook = scs_torch.functional.sharpened_cosine_similarity_max_abs_pool
    try:
        def counting(*args, **kwargs):
            calls.append(kwargs)
            return hook(*args, **kwargs)

        scs_torch.functional.sharpened_cosine_similarity_max_abs_pool = counting
        fused = model(x)
    finally:
        scs_torch.functional.sharpened_cosine_similarity_max_abs_pool = hook
    assert len(calls) == sum(isinstance(layer, SCS) for layer in architecture.layers)
    layer_by_layer = x
    for layer in model:
        layer_by_layer = layer(layer_by_layer)
    assert_close(fused.detach(), layer_by_layer.detach(), 1e-12, "torch fused network vs layer by layer")

    with jax_precision("float64"):
        jax_model = build_jax_model(architecture, rngs=nnx.Rngs(0), param_dtype=jnp.float64)
        torch_to_jax(model, jax_model)
        xj = jnp.asarray(nchw_to_nhwc(x.numpy()))
        fused_jax = jax_model(xj)
        layer_by_layer = xj
        for layer in jax_model.layers:
            layer_by_layer = layer(layer_by_layer)
        assert_close(fused_jax, layer_by_layer, 1e-12, "JAX fused network vs layer by layer")
    assert_close(fused_jax, fused.detach(), 1e-10, "JAX vs torch fused network")


@pytest.mark.parametrize("name", ["sharpened_cosine_similarity", "sharpened_cosine_similarity_max_abs_pool"])
def test_functional_p_q_eps_rejected_alike(name, rng):
    """The functional forms check p's and q's shapes and eps like the layers do, in both frameworks."""
    layer = make_torch_scs(rng, "float32", 2, 4, 3)
    jax_layer = jax_twin(layer, "float32")
    x = rng.standard_normal((1, 2, 6, 6)).astype(np.float32)
    torch_args = [torch.from_numpy(x), layer.weight, layer.p, layer.q]
    jax_args = [jnp.asarray(nchw_to_nhwc(x)), jax_layer.kernel[...], jax_layer.p[...], jax_layer.q[...]]
    for index, text in [(2, r"p: expected shape \(4,\)"), (3, r"q: expected one value")]:
        for module, args, repeat in ((scs_torch, torch_args, lambda a: torch.cat([a, a])),
                                     (scs_jax, jax_args, lambda a: jnp.concatenate([a, a]))):
            bad = list(args)
            bad[index] = repeat(bad[index])  # p of 8 values for 4 channels, q of 2 values
            with pytest.raises(ValueError, match=text):
                getattr(module, name)(*bad)
    for eps, error in [(0.0, ValueError), (-1.0, ValueError), (float("inf"), ValueError), ("1e-12", TypeError),
                       (None, TypeError)]:
        for module, args in ((scs_torch, torch_args), (scs_jax, jax_args)):
            with pytest.raises(error, match="eps: expected a positive"):
                getattr(module, name)(*args, eps=eps)

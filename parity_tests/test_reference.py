"""Both frameworks against an independent numpy float64 reference of the equation.

The reference unfolds every patch explicitly (``sliding_window_view`` over a
zero-padded copy) and shares no code with the libraries: its own padding
rule, output sizes, group slicing and parameterisation. Gradients of both
frameworks are checked against central differences of this reference.
Initial distributions are checked against the formulas they are meant to
follow.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers.parity import (
    assert_close,
    jax_precision,
    jax_scs_run,
    jax_twin,
    make_torch_scs,
    torch_scs_run,
)
from flax import nnx

import scs_jax
import scs_torch
from demos.architectures import Architecture, Linear
from demos.build_jax import build_jax_model

EPS = 1e-12


def explicit_padding(padding, kernel):
    """((top, bottom), (left, right)); "same" puts an even kernel's extra pixel bottom/right."""
    kh, kw = kernel
    if padding == "same":
        return ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2)
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    return (ph, ph), (pw, pw)


def reference_scs(x, weight, p_param, q_param, stride=1, padding=0, groups=1):
    """sign(cos)(|cos| + eps)^p, cos = s·k / ((‖s‖ + q)(‖k‖ + q)), NCHW, float64."""
    x, weight = np.asarray(x, np.float64), np.asarray(weight, np.float64)
    n, c, h, w = x.shape
    out_channels, group_in, kh, kw = weight.shape
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    (pt, pb), (pl, pr) = explicit_padding(padding, (kh, kw))
    padded = np.zeros((n, c, h + pt + pb, w + pl + pr))
    padded[:, :, pt : pt + h, pl : pl + w] = x
    # (N, C, H_out, W_out, kH, kW): every window, strided
    windows = np.lib.stride_tricks.sliding_window_view(padded, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
    p = (np.asarray(p_param, np.float64) / 10.0) ** 2
    q = (float(np.asarray(q_param).reshape(-1)[0]) / 100.0) ** 2
    per_group = out_channels // groups
    out = np.empty((n, out_channels, windows.shape[2], windows.shape[3]))
    for o in range(out_channels):
        g = o // per_group
        patches = windows[:, g * group_in : (g + 1) * group_in]  # (N, I/G, H', W', kH, kW)
        patches = patches.transpose(0, 2, 3, 1, 4, 5).reshape(n, windows.shape[2], windows.shape[3], -1)
        kernel = weight[o].reshape(-1)  # (I/G · kH · kW), the same (channel, row, column) order
        s_norm = np.sqrt(np.sum(patches**2, axis=-1) + EPS)
        k_norm = np.sqrt(np.sum(kernel**2) + EPS)
        cos = patches @ kernel / ((s_norm + q) * (k_norm + q))
        out[:, o] = np.sign(cos) * (np.abs(cos) + EPS) ** p[o]
    return out


def reference_from_layer(layer, x):
    params = {name: t.detach().numpy().astype(np.float64) for name, t in layer.named_parameters()}
    return reference_scs(
        x, params["weight"], params["p"], params["q"], layer.stride, _reference_padding(layer), layer.groups
    )


def _reference_padding(layer):
    (pt, pb), (pl, pr) = layer.padding
    if (pt, pl) != (pb, pr):
        return "same"  # the only asymmetric padding these tests build
    return (pt, pl)


def test_reference_itself_on_a_hand_computed_case():
    """1x1 output, 2 channels: cos written out by hand."""
    x = np.array([3.0, 4.0, 0.0, 0.0]).reshape(1, 1, 2, 2)
    weight = np.array([1.0, 0.0, 0.0, 0.0]).reshape(1, 1, 2, 2)
    q_param, p_param = 20.0, 10.0  # q = 0.04, p = 1
    cos = 3.0 / ((np.sqrt(25 + EPS) + 0.04) * (np.sqrt(1 + EPS) + 0.04))
    assert reference_scs(x, weight, [p_param], [q_param])[0, 0, 0, 0] == pytest.approx(cos + EPS, rel=1e-15)


# (batch, in, out, kernel, stride, padding, groups, H, W); shapes shared with test_layer_parity
REFERENCE_CASES = [
    (3, 1, 8, 3, 1, 0, 1, 7, 6),
    (2, 3, 5, 5, 1, 2, 1, 9, 10),
    (1, 2, 3, 3, (2, 1), 0, 1, 7, 6),
    (2, 4, 6, 3, 2, 1, 1, 9, 8),
    (2, 4, 8, 3, 1, 0, 4, 5, 6),
    (1, 6, 9, 3, 2, 1, 3, 9, 9),
    (1, 2, 3, 4, 1, "same", 1, 6, 7),
    (1, 4, 6, 5, 1, "same", 2, 5, 5),
]


@pytest.mark.parametrize("case", REFERENCE_CASES, ids=str)
def test_outputs_match_reference(case, rng):
    n, c_in, c_out, k, stride, padding, groups, h, w = case
    layer = make_torch_scs(rng, "float64", c_in, c_out, k, stride, padding, groups)
    x = rng.standard_normal((n, c_in, h, w))
    expected = reference_from_layer(layer, x)
    g = rng.standard_normal(expected.shape)
    torch_out = torch_scs_run(layer, x, g)["out"]
    with jax_precision("float64"):
        jax_out = jax_scs_run(jax_twin(layer, "float64"), x, g)["out"]
    assert_close(torch_out, expected, 1e-10, f"{case} torch vs reference", kind="output", dtype="float64")
    assert_close(jax_out, expected, 1e-10, f"{case} jax vs reference", kind="output", dtype="float64")


def test_gradients_match_finite_differences(rng):
    """Both frameworks' gradients vs central differences of the reference, a few entries each.

    L = Σ g ⊙ out. With step h the central difference errs by about
    h²/6 · |L₃| + ε|L|/h (L₃ the third derivative). The input is redrawn
    until every |cos| > 0.01, where the third derivative of |cos|^p
    (p ≥ 0.25) is at most ~1e5, so the truncation term is ~2e-8 and the
    rounding term (|L| ~ 10) ~2e-9 for h = 1e-6. The tolerance, 1e-6
    relative to the largest gradient of the parameter (the suite's max-norm
    convention, gradients here ~1), keeps a margin of >10x, while a wrong
    formula (a missing factor, a dropped term) is off by O(1).
    """
    layer = make_torch_scs(rng, "float64", 2, 3, 3, 1, 1, 1)
    params = {name: t.detach().numpy().astype(np.float64) for name, t in layer.named_parameters()}
    for _ in range(50):
        x = rng.standard_normal((1, 2, 4, 4))
        cos = reference_scs(x, params["weight"], np.full(3, 10.0), params["q"], 1, 1)  # p = 1: out ≈ cos
        if np.abs(cos).min() > 0.01:
            break
    assert np.abs(cos).min() > 0.01, "premise: no cosine near 0"
    g = rng.standard_normal(cos.shape)

    def loss(x=x, weight=params["weight"], p=params["p"], q=params["q"]):
        return float(np.sum(g * reference_scs(x, weight, p, q, 1, 1)))

    torch_grads = torch_scs_run(layer, x, g)
    with jax_precision("float64"):
        jax_grads = jax_scs_run(jax_twin(layer, "float64"), x, g)
    h = 1e-6
    entries = {
        "x": [(0, 0, 0, 0), (0, 1, 2, 3), (0, 0, 3, 1)],
        "weight": [(0, 0, 0, 0), (1, 1, 1, 1), (2, 0, 2, 1)],
        "p": [(0,), (2,)],
        "q": [(0,)],
    }
    values = {"x": x, **params}
    for name, indices in entries.items():
        scale = max(np.abs(torch_grads[name]).max(), np.abs(jax_grads[name]).max())
        assert scale > 0
        for index in indices:
            plus, minus = values[name].copy(), values[name].copy()
            plus[index] += h
            minus[index] -= h
            fd = (loss(**{name: plus}) - loss(**{name: minus})) / (2 * h)
            for framework, grads in (("torch", torch_grads), ("jax", jax_grads)):
                err = abs(grads[name][index] - fd) / scale
                assert err <= 1e-6, f"{framework} d/d{name}{index}: {grads[name][index]} vs finite difference {fd} (rel {err:.1e})"


# --- initial distributions ---

def xavier_bound(c_in, c_out, kernel, groups):
    kh, kw = kernel
    return math.sqrt(6.0 / (c_in // groups * kh * kw + c_out * kh * kw))


def assert_uniform(sample, bound, what):
    """Support [-bound, bound], both ends reached, and a Kolmogorov–Smirnov distance test.

    With n ≥ 3500 draws each extreme lies within 0.5 % of the bound except
    with probability (1 - 0.0025)^n < 2e-4, and D < 1.95/sqrt(n) is the
    0.1 % KS level. Seeds are fixed, so the outcome is deterministic.
    """
    sample = np.sort(np.asarray(sample, np.float64).ravel())
    n = sample.size
    assert n >= 3500
    assert sample[-1] <= bound and sample[0] >= -bound, f"{what}: draws outside ±{bound}"
    assert sample[-1] >= bound * 0.995 and sample[0] <= -bound * 0.995, (
        f"{what}: extremes {sample[0]:.5f}, {sample[-1]:.5f} not close to ±{bound:.5f}"
    )
    cdf = (sample + bound) / (2 * bound)
    d = max(np.max(np.arange(1, n + 1) / n - cdf), np.max(cdf - np.arange(n) / n))
    assert d < 1.95 / math.sqrt(n), f"{what}: KS distance {d:.4f} from uniform(±{bound:.5f})"


@pytest.mark.parametrize("c_in,c_out,kernel,groups", [(16, 32, (3, 3), 1), (8, 16, (3, 5), 2)])
def test_initial_weights_are_xavier_uniform(c_in, c_out, kernel, groups):
    bound = xavier_bound(c_in, c_out, kernel, groups)
    torch.manual_seed(0)
    torch_layers = [scs_torch.SharpenedCosineSimilarity2d(c_in, c_out, kernel, groups=groups) for _ in range(5)]
    jax_layers = [
        scs_jax.SharpenedCosineSimilarity(c_in, c_out, kernel, feature_group_count=groups, rngs=nnx.Rngs(seed))
        for seed in range(5)
    ]
    assert jax_layers[0].kernel.shape == (*kernel, c_in // groups, c_out)
    assert_uniform(np.concatenate([l.weight.detach().numpy().ravel() for l in torch_layers]), bound, "torch weight")
    assert_uniform(np.concatenate([np.asarray(l.kernel[...]).ravel() for l in jax_layers]), bound, "jax kernel")
    constants = [(l.p.detach().numpy(), l.q.detach().numpy()) for l in torch_layers]
    constants += [(np.asarray(l.p[...]), np.asarray(l.q[...])) for l in jax_layers]
    for p, q in constants:
        np.testing.assert_array_equal(p, np.full(c_out, math.sqrt(2) * 10, np.float32))
        np.testing.assert_array_equal(q, np.array([10.0], np.float32))


def test_jax_linear_matches_torch_default_init():
    """The JAX build's Linear: weight and bias uniform in ±1/sqrt(fan_in), as torch's nn.Linear.

    One wide layer (fan_in 512, 4000 outputs) gives 4000 bias draws from one build.
    """
    fan_in, fan_out = 512, 4000
    arch = Architecture("linear_only", (fan_in, 1, 1), fan_out, (Linear(fan_in, fan_out),))
    linear = build_jax_model(arch, rngs=nnx.Rngs(0)).layers[0]
    bound = 1 / math.sqrt(fan_in)
    assert_uniform(np.asarray(linear.kernel[...])[:, :8], bound, "jax Linear weight")
    assert_uniform(np.asarray(linear.bias[...]), bound, "jax Linear bias")
    torch.manual_seed(0)
    reference = torch.nn.Linear(fan_in, fan_out)
    assert_uniform(reference.weight.detach().numpy()[:8], bound, "torch Linear weight")
    assert_uniform(reference.bias.detach().numpy(), bound, "torch Linear bias")

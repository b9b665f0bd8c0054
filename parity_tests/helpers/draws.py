"""Hypothesis strategies for SCS layers and adversarial inputs, and the layers they describe.

A draw is a recipe (:class:`ScsDraw`), not arrays element by element: arrays
of hundreds of floats are slow for hypothesis to generate and shrink. The
domain and its reasons are in ``test_properties.py``'s docstring.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from helpers.cases import LAYER_CASES
from helpers.parity import DTYPES, P_PARAM_RANGE, Q_PARAM_RANGE, TORCH_DTYPES
from hypothesis import strategies as st

import scs_torch


def one_element_patches(structure) -> bool:
    """Whether every window sees a single input element (the rest, if any, is padding)."""
    _, c_in, _, k, _, _, groups, h, w = structure
    kh, kw = (k, k) if isinstance(k, int) else k
    return c_in // groups * min(kh, h) * min(kw, w) == 1


# (batch, in, out, kernel, stride, padding, groups, H, W), beyond test_layer_parity's
ODD_STRUCTURES = [
    (1, 2, 2, (1, 3), (1, 2), (0, 1), 1, 4, 5),
    (2, 3, 3, (5, 2), 3, "valid", 1, 7, 6),
    (1, 4, 4, (2, 4), (3, 1), (1, 0), 4, 5, 6),
    (3, 4, 4, 3, 1, 1, 2, 1, 1),  # padded input exactly the kernel: one output, mostly padding
    (1, 1, 2, 5, 1, "same", 1, 3, 4),  # kernel larger than the input
    (2, 6, 6, 2, 3, 0, 3, 5, 5),  # stride > kernel: inputs no window sees
    (1, 3, 6, (4, 1), 1, "same", 3, 4, 4),
]
STRUCTURES = [s for s in LAYER_CASES + ODD_STRUCTURES if not one_element_patches(s)]
TINY = {"float64": 1e-30, "float32": 1e-10}
HUGE = 1e30


# --- inputs from a recipe -----------------------------------------------------

@st.composite
def adversarial_arrays(draw, shape, dtype):
    """An array of ``shape`` (NCHW) with zeros, ties, tiny and huge values, mixed signs."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    base = draw(st.sampled_from(["gaussian", "small integers", "zeros", "signs"]))
    if base == "gaussian":
        x = rng.standard_normal(shape)
    elif base == "small integers":
        x = rng.integers(-2, 3, shape).astype(np.float64)  # ties, zero patches
    elif base == "signs":
        x = rng.choice([-1.0, 1.0], shape)  # equal magnitudes, +a/-a ties
    else:
        x = np.zeros(shape)
    magnitudes = [1.0, TINY[dtype], HUGE]
    x *= draw(st.sampled_from(magnitudes))
    for _ in range(draw(st.integers(0, 3))):
        n = draw(st.integers(0, shape[0] - 1))
        c0 = draw(st.integers(0, shape[1] - 1))
        c1 = draw(st.integers(c0 + 1, shape[1]))
        h0 = draw(st.integers(0, shape[2] - 1))
        h1 = draw(st.integers(h0 + 1, shape[2]))
        w0 = draw(st.integers(0, shape[3] - 1))
        w1 = draw(st.integers(w0 + 1, shape[3]))
        region = (n, slice(c0, c1), slice(h0, h1), slice(w0, w1))
        edit = draw(st.sampled_from(["zero", "constant", "scale", "negate"]))
        if edit == "zero":
            x[region] = 0.0
        elif edit == "constant":
            x[region] = draw(st.sampled_from([1.0, -1.0, 0.5, 3.0, TINY[dtype], HUGE]))
        elif edit == "scale":
            x[region] *= draw(st.sampled_from(magnitudes[1:]))
        else:
            x[region] *= -1.0
    # stacked edits may leave the stated range (1e60, tiny²): clip back into it
    tiny = (np.abs(x) < TINY[dtype] * 1e-6) & (x != 0)
    x[tiny] = np.sign(x[tiny]) * TINY[dtype]
    return np.clip(x, -HUGE, HUGE)


class ScsDraw(NamedTuple):
    structure: tuple
    dtype: str
    weight_seed: int  # the layer's own init, seeded
    p: tuple  # p_param per output channel
    q: float  # q_param
    zero_kernels: frozenset  # output channels whose kernel is set to 0
    x: np.ndarray  # NCHW
    g_seed: int  # upstream gradient: standard normal from this seed


@st.composite
def scs_draws(draw, structures):
    """An :class:`ScsDraw` of a structure drawn from ``structures``, dtype, weights, p, q and input."""
    structure = draw(structures)
    dtype = draw(st.sampled_from(DTYPES))
    n, c_in, c_out, *_, h, w = structure
    return ScsDraw(
        structure,
        dtype,
        draw(st.integers(0, 2**31 - 1)),
        tuple(draw(st.lists(st.floats(*P_PARAM_RANGE), min_size=c_out, max_size=c_out))),
        draw(st.floats(*Q_PARAM_RANGE)),
        frozenset(draw(st.sets(st.integers(0, c_out - 1), max_size=c_out))),
        draw(adversarial_arrays((n, c_in, h, w), dtype)),
        draw(st.integers(0, 2**32 - 1)),
    )


def build_torch_layer(structure, dtype):
    """The torch layer of ``(batch, in, out, kernel, stride, padding, groups, H, W)`` (its own init)."""
    _, c_in, c_out, k, stride, padding, groups, _, _ = structure
    return scs_torch.SharpenedCosineSimilarity2d(c_in, c_out, k, stride, padding, groups, dtype=TORCH_DTYPES[dtype])


def drawn_torch_layer(case: ScsDraw):
    """The torch layer of a draw: its init from ``weight_seed``, then the drawn p, q and zero kernels."""
    layer = build_torch_layer(case.structure, case.dtype)
    torch.manual_seed(case.weight_seed)
    layer.reset_parameters()
    with torch.no_grad():
        layer.p.copy_(torch.tensor(case.p))
        layer.q.fill_(case.q)
        for o in case.zero_kernels:
            layer.weight[o] = 0.0
    return layer

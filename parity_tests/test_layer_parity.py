"""One SCS layer, torch vs JAX: outputs and every gradient for random weights and inputs.

The torch layer is drawn by its own init, p and q are moved off their initial
values, and the JAX layer gets its parameters through the numpy converters,
the path users take.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.cases import LAYER_CASES as CASES
from helpers.parity import DTYPES, TORCH_DTYPES, compare_scs, make_torch_scs, output_shape

import scs_torch

def _case_id(case):
    n, i, o, k, s, pad, g, h, w = case
    return f"n{n}-c{i}to{o}-k{k}-s{s}-p{pad}-g{g}-{h}x{w}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_layer_outputs_and_gradients(case, dtype, rng):
    n, c_in, c_out, k, stride, padding, groups, h, w = case
    layer = make_torch_scs(rng, dtype, c_in, c_out, k, stride, padding, groups)
    x = rng.standard_normal((n, c_in, h, w))
    g = rng.standard_normal(output_shape(layer, x.shape))
    expected = compare_scs(layer, x, g, dtype, _case_id(case))
    # The comparison is only meaningful if every gradient carries signal.
    for name in ("x", "weight", "p", "q"):
        assert np.max(np.abs(expected[name])) > 0, f"d/d{name} is identically zero"
    if padding == "same":
        assert expected["out"].shape[2:] == (h, w), "'same' padding changed the spatial size"


@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_at_initial_parameters(dtype, rng):
    """The unperturbed layer (p = 2, q = 0.01) as users first meet it."""
    layer = make_torch_scs(rng, dtype, 2, 4, 3, 1, 1, 1, perturb=False)
    x = rng.standard_normal((1, 2, 8, 8))
    g = rng.standard_normal(output_shape(layer, x.shape))
    compare_scs(layer, x, g, dtype, "initial parameters")


@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_started_at_another_exponent_and_floor(dtype, rng):
    """Started at ``exponent_init=3, floor_init=0.37``: q far above the grid's perturbed
    range, the same maths in both frameworks (the JAX side gets torch's values; where each
    side starts is ``test_init_distributions.py``'s)."""
    torch.manual_seed(int(rng.integers(2**31)))
    layer = scs_torch.SharpenedCosineSimilarity2d(2, 4, 3, padding=1, exponent_init=3.0, floor_init=0.37,
                                                  dtype=TORCH_DTYPES[dtype])
    x = rng.standard_normal((2, 2, 6, 6))
    g = rng.standard_normal(output_shape(layer, x.shape))
    expected = compare_scs(layer, x, g, dtype, "exponent 3, floor 0.37")
    for name in ("x", "weight", "p", "q"):
        assert np.max(np.abs(expected[name])) > 0, f"d/d{name} is identically zero"

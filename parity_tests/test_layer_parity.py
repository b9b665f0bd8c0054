"""One SCS layer, torch vs JAX: outputs and every gradient for random weights and inputs.

The torch layer is drawn by its own init, p and q are moved off their initial
values, and the JAX layer gets its parameters through the numpy converters,
the path users take.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DTYPES, compare_scs, make_torch_scs, output_shape

# (batch, in, out, kernel, stride, padding, groups, H, W). A hand-picked list
# instead of a Cartesian product (each new shape costs an XLA compile):
# batch 1 and >1, channels 1..16, kernels 1/3/5, paddings 0/1/2, odd and even
# sizes, non-square inputs; then strides, groups and "same".
CASES = [
    (1, 1, 1, 1, 1, 0, 1, 5, 5),
    (3, 1, 8, 3, 1, 0, 1, 7, 6),
    (1, 2, 4, 3, 1, 1, 1, 8, 8),
    (2, 3, 5, 5, 1, 2, 1, 9, 10),
    (1, 4, 16, 5, 1, 0, 1, 11, 9),
    (2, 8, 8, 1, 1, 1, 1, 6, 7),
    (1, 16, 2, 3, 1, 2, 1, 5, 4),
    (2, 16, 16, 3, 1, 1, 1, 6, 6),
    # stride 2 (also with sizes the stride does not divide) and a stride pair
    (2, 4, 6, 3, 2, 1, 1, 9, 8),
    (1, 3, 4, 5, 2, 2, 1, 10, 11),
    (1, 2, 3, 3, (2, 1), 0, 1, 7, 6),
    # groups: 2, depthwise, depthwise with a channel multiplier, groups + stride
    (2, 4, 6, 3, 1, 1, 2, 7, 8),
    (1, 8, 8, 3, 1, 1, 8, 6, 5),
    (2, 4, 8, 3, 1, 0, 4, 5, 6),
    (1, 6, 9, 3, 2, 1, 3, 9, 9),
    # "same": odd kernel, even kernel (asymmetric padding, extra pixel bottom/right), with groups
    (2, 3, 4, 3, 1, "same", 1, 7, 6),
    (1, 2, 3, 4, 1, "same", 1, 6, 7),
    (1, 4, 6, 5, 1, "same", 2, 5, 5),
]


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

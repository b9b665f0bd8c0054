"""Degenerate values and bad inputs: both frameworks stay finite, agree, or reject alike.

Every value case uses one layer shape (2 -> 3 channels, kernel 3, padding 1)
on a (2, 2, 5, 6) input, so XLA compiles it once per dtype.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from helpers.parity import (
    DTYPES,
    TORCH_DTYPES,
    assert_close_nonfinite,
    compare_scs,
    jax_precision,
    jax_scs_run,
    jax_twin,
    make_torch_scs,
    output_shape,
    torch_scs_run,
)
from flax import nnx

import scs_jax
import scs_torch

SHAPE = (2, 2, 5, 6)
P_HALF = 0.5**0.5 * 10  # p_param giving the exponent 0.5


def edge_layer(rng, dtype):
    return make_torch_scs(rng, dtype, 2, 3, 3, 1, 1, 1)


def set_params(layer, weight=None, p=None):
    with torch.no_grad():
        if weight is not None:
            layer.weight.copy_(torch.as_tensor(weight))
        if p is not None:
            layer.p.copy_(torch.as_tensor(p))


def upstream(layer, rng):
    return rng.standard_normal(output_shape(layer, SHAPE))


def assert_all_finite(results, label):
    for name, value in results.items():
        assert np.all(np.isfinite(value)), f"{label}: {name} has non-finite values"


@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_input(dtype, rng):
    """‖s‖ = sqrt(eps): cos = 0, the output is exactly 0 and sign(0) = 0 zeroes every gradient."""
    layer = edge_layer(rng, dtype)
    res = compare_scs(layer, np.zeros(SHAPE), upstream(layer, rng), dtype, "zero input")
    assert_all_finite(res, "zero input")
    assert not np.any(res["out"])


@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_kernel(dtype, rng):
    layer = edge_layer(rng, dtype)
    set_params(layer, weight=np.zeros(layer.weight.shape))
    res = compare_scs(layer, rng.standard_normal(SHAPE), upstream(layer, rng), dtype, "zero kernel")
    assert_all_finite(res, "zero kernel")
    assert not np.any(res["out"])


@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_patches_among_nonzero_ones(dtype, rng):
    """Zero patches next to ordinary ones: the ordinary outputs and gradients still match."""
    layer = edge_layer(rng, dtype)
    x = rng.standard_normal(SHAPE)
    x[0] = 0.0  # a whole zero image
    x[1, :, :, :2] = 0.0  # zero columns: patches there mix padding and zeros
    res = compare_scs(layer, x, upstream(layer, rng), dtype, "zero patches")
    assert not np.any(res["out"][0]) and np.all(res["out"][1, :, :, 3:] != 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_negative_cosine_fractional_power(dtype, rng):
    """A patch equal to -kernel: cos < 0 with exponent 0.5 keeps its sign and stays finite."""
    layer = edge_layer(rng, dtype)
    set_params(layer, p=np.full(3, P_HALF))
    weight = layer.weight.detach().numpy().astype(np.float64)
    x = rng.standard_normal(SHAPE)
    x[0, :, 1:4, 1:4] = -weight[0]  # the patch of output (0, 0, 2, 2)
    res = compare_scs(layer, x, upstream(layer, rng), dtype, "negative cos, p = 0.5")
    assert_all_finite(res, "negative cos")
    q = (layer.q.item() / 100) ** 2
    norm = np.sqrt(np.sum(weight[0] ** 2) + 1e-12)
    cos = -(norm**2) / (norm + q) ** 2
    expected = -np.sqrt(abs(cos) + 1e-12)
    value = res["out"][0, 0, 2, 2]
    assert value < 0
    assert abs(value - expected) <= 1e-5 * abs(expected), (value, expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_tiny_cosine(dtype, rng):
    """cos ≈ 1e-9 (exactly formed: a one-hot kernel picks one input of 1e-9 in a unit patch).

    With exponent 0.5 the slope p·|cos|^(p-1) is ~2e4: large, finite and the
    same in both frameworks.
    """
    layer = edge_layer(rng, dtype)
    weight = layer.weight.detach().numpy().astype(np.float64)
    weight[0] = 0.0
    weight[0, 0, 1, 1] = 1.0  # kernel 0 reads channel 0 at the window centre
    set_params(layer, weight=weight, p=np.array([P_HALF, 12.0, 18.0]))
    x = rng.standard_normal(SHAPE)
    x[:, 0] = 1e-9  # channel 0: every centre value is 1e-9, so every cos of kernel 0 is ~1e-9
    res = compare_scs(layer, x, upstream(layer, rng), dtype, "tiny cos")
    assert_all_finite(res, "tiny cos")
    out0 = np.abs(res["out"][:, 0])
    # |out| = (|cos| + eps)^0.5 with 1e-11 < |cos| < 1e-8 (patch norms ~1..6 plus q)
    assert np.all((out0 > 3e-6) & (out0 < 1.1e-4)), (out0.min(), out0.max())


@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_input_propagates(dtype, rng):
    layer = edge_layer(rng, dtype)
    x = rng.standard_normal(SHAPE)
    x[0, 1, 2, 3] = np.nan
    g = upstream(layer, rng)
    expected_nan = np.zeros(output_shape(layer, SHAPE), bool)
    expected_nan[0, :, 1:4, 2:5] = True  # every output whose 3x3 window (padding 1) holds (2, 3)
    res_t = torch_scs_run(layer, x, g)
    with jax_precision(dtype):
        res_j = jax_scs_run(jax_twin(layer, dtype), x, g)
    for res, name in ((res_t, "torch"), (res_j, "jax")):
        np.testing.assert_array_equal(np.isnan(res["out"]), expected_nan, err_msg=f"{name} NaN outputs")
        # the gradients see the NaN too (an unmasked NaN makes d/dweight NaN)
        assert np.isnan(res["weight"]).any(), f"{name}: NaN vanished from d/dweight"
    assert_close_nonfinite(res_j["out"], res_t["out"], 1e-5 if dtype == "float32" else 1e-10, f"{dtype} output with NaN")


# --- bad inputs: the same cases rejected by both, messages naming the argument ---

BAD_INPUTS = [
    # (case, NCHW shape, dtype, exception, argument named in the message)
    ("rank 3", (2, 5, 6), "float32", ValueError, "x"),
    ("rank 5", (1, 2, 2, 5, 6), "float32", ValueError, "x"),
    ("wrong channel count", (2, 3, 5, 6), "float32", ValueError, "x"),
    ("integer dtype", (2, 2, 5, 6), "int32", TypeError, "x"),
    ("batch of zero", (0, 2, 5, 6), "float32", ValueError, "x"),
    ("smaller than the kernel", (2, 2, 2, 6), "float32", ValueError, "x"),
]


def _as_nhwc(shape):
    return (shape[0], *shape[2:], shape[1]) if len(shape) == 4 else shape


@pytest.mark.parametrize("case,shape,dtype,error,argument", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_inputs_rejected_by_both(case, shape, dtype, error, argument):
    torch_layer = scs_torch.SharpenedCosineSimilarity2d(2, 3, 3, padding=0)
    jax_layer = scs_jax.SharpenedCosineSimilarity(2, 3, 3, padding=0, rngs=nnx.Rngs(0))
    with pytest.raises(error) as torch_error:
        torch_layer(torch.zeros(shape, dtype=getattr(torch, dtype)))
    with pytest.raises(error) as jax_error:
        jax_layer(jnp.zeros(_as_nhwc(shape), dtype=dtype))
    for info in (torch_error, jax_error):
        assert str(info.value).startswith(f"{argument}:"), str(info.value)


@pytest.mark.parametrize("case,shape,error", [
    ("rank 3", (2, 5, 6), ValueError),
    ("integer dtype", None, TypeError),
    ("smaller than the kernel", (1, 2, 1, 6), ValueError),
    ("batch of zero", (0, 2, 4, 4), ValueError),
], ids=lambda v: v if isinstance(v, str) else "")
def test_bad_pool_inputs_rejected_by_both(case, shape, error):
    torch_x = torch.zeros((1, 2, 4, 4), dtype=torch.int32) if shape is None else torch.zeros(shape)
    jax_x = jnp.zeros((1, 4, 4, 2), dtype=jnp.int32) if shape is None else jnp.zeros(_as_nhwc(shape))
    with pytest.raises(error, match=r"^x:"):
        scs_torch.MaxAbsPool2d(2)(torch_x)
    with pytest.raises(error, match=r"^x:"):
        scs_jax.MaxAbsPool(2)(jax_x)


# (kwargs in torch's names, exception, torch argument, JAX argument)
BAD_CONFIGS = [
    ({"in_channels": 4, "out_channels": 6, "groups": 4}, ValueError, "groups", "feature_group_count"),
    ({"in_channels": 3, "out_channels": 6, "groups": 2}, ValueError, "groups", "feature_group_count"),
    ({"in_channels": 4, "out_channels": 6, "groups": 0}, ValueError, "groups", "feature_group_count"),
    ({"in_channels": 0, "out_channels": 6}, ValueError, "in_channels", "in_features"),
    ({"in_channels": 2, "out_channels": 6, "kernel_size": 0}, ValueError, "kernel_size", "kernel_size"),
    ({"in_channels": 2, "out_channels": 6, "kernel_size": (3, 3, 3)}, TypeError, "kernel_size", "kernel_size"),
    ({"in_channels": 2, "out_channels": 6, "stride": 0}, ValueError, "stride", "stride"),
    ({"in_channels": 2, "out_channels": 6, "padding": -1}, ValueError, "padding", "padding"),
    ({"in_channels": 2, "out_channels": 6, "padding": "full"}, ValueError, "padding", "padding"),
    ({"in_channels": 2, "out_channels": 6, "padding": "same", "stride": 2}, ValueError, "padding", "padding"),
    ({"in_channels": 2, "out_channels": 6, "eps": 0.0}, ValueError, "eps", "eps"),
]


@pytest.mark.parametrize("kwargs,error,torch_arg,jax_arg", BAD_CONFIGS)
def test_bad_configurations_rejected_by_both(kwargs, error, torch_arg, jax_arg):
    kwargs = {"kernel_size": 3, **kwargs}
    jax_kwargs = {
        {"in_channels": "in_features", "out_channels": "out_features", "groups": "feature_group_count"}.get(k, k): v
        for k, v in kwargs.items()
    }
    with pytest.raises(error, match=rf"^{torch_arg}:"):
        scs_torch.SharpenedCosineSimilarity2d(**kwargs)
    with pytest.raises(error, match=rf"^{jax_arg}:"):
        scs_jax.SharpenedCosineSimilarity(**jax_kwargs, rngs=nnx.Rngs(0))

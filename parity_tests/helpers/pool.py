"""MaxAbsPool in both frameworks on the same numbers (NCHW numpy in and out)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import torch
from helpers.parity import TORCH_DTYPES, jax_precision, jax_vjp, nchw_to_nhwc, nhwc_to_nchw

import scs_jax
import scs_torch


def torch_pool(x, g, kernel, stride, ceil_mode, dtype):
    """Output and input gradient (NCHW numpy) of the torch MaxAbsPool2d for upstream ``g``."""
    xt = torch.tensor(x, dtype=TORCH_DTYPES[dtype], requires_grad=True)
    out = scs_torch.MaxAbsPool2d(kernel, stride, ceil_mode)(xt)
    (gx,) = torch.autograd.grad(out, [xt], torch.tensor(g, dtype=TORCH_DTYPES[dtype]))
    return out.detach().numpy(), gx.numpy()


def jax_pool(x, g, kernel, stride, ceil_mode, dtype):
    """Output and input gradient (NCHW numpy) of the JAX MaxAbsPool."""
    with jax_precision(dtype):
        pool = scs_jax.MaxAbsPool(kernel, stride, ceil_mode)
        xj = jnp.asarray(nchw_to_nhwc(x), dtype=dtype)
        out, _, gx = jax_vjp(pool, xj, jnp.asarray(nchw_to_nhwc(g), dtype=dtype))
        assert out.dtype == jnp.dtype(dtype)
        return nhwc_to_nchw(np.asarray(out)), nhwc_to_nchw(np.asarray(gx))


def ones_upstream(x, kernel, stride, ceil_mode):
    """An upstream gradient of ones, the pooled shape of ``x``."""
    n, c, h, w = x.shape
    return np.ones((n, c, expected_size(h, kernel, stride, ceil_mode), expected_size(w, kernel, stride, ceil_mode)))


def assert_identical(actual, expected, what):
    """Equal shapes and bit-identical values (NaN equal to NaN)."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    same = (actual == expected) | (np.isnan(actual) & np.isnan(expected))
    assert same.all(), f"{what}: {int((~same).sum())} of {same.size} entries differ"


def expected_size(size, kernel, stride, ceil_mode):
    """torch.nn.MaxPool2d's output length, written out independently."""
    if ceil_mode:
        out = int(np.ceil((size - kernel) / stride)) + 1
        return out - 1 if (out - 1) * stride >= size else out
    return (size - kernel) // stride + 1


def max_pool2d_size(size, kernel, stride, ceil_mode):
    """The output length of ``torch.nn.MaxPool2d`` itself on a ``size x size`` input; None where it raises."""
    try:
        out = torch.nn.MaxPool2d(kernel, stride, ceil_mode=ceil_mode)(torch.zeros(1, 1, size, size))
    except RuntimeError:
        return None
    return out.shape[-1]

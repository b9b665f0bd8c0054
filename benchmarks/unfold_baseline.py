"""The unfold-based SCS baseline of ``benchmarks/speed.py``: the reference's way, in both frameworks.

Brandon Rohrer's reference (https://github.com/brohrer/sharpened_cosine_similarity_torch,
February 2022) materialises every patch (``unfold2d``: an ``as_strided``
view, then ``x / x_norm`` writes all of them), divides patches and kernels by
their norms and contracts them with ``einsum``; its ``MaxAbsPool2d`` is two
max-poolings of ``x`` and ``-x`` and a ``where``. The functions here do the
same maths the same way — patches from an ``as_strided`` view / ``lax.conv_general_dilated_patches``,
then a dot product — so the benchmark can time the network the libraries
replace. They are benchmark code, not part of the libraries: stride and
symmetric zero padding only, no groups, no argument checks.

:func:`patched_torch` / :func:`patched_jax` swap them into ``scs_torch.layers``
/ ``scs_jax.layers`` for the duration of a ``with`` block, so that the demo
trainers' own step (the same optimizer, loss and data path) runs the
baseline. A JAX step is traced on its first call: warm it up inside the
block; the compiled step keeps the baseline afterwards.
"""

from __future__ import annotations

import contextlib
import types

P_SCALE, Q_SCALE = 10.0, 100.0


def torch_unfold_scs(x, weight, p, q, stride=1, padding=0, groups=1, eps=1e-12):
    """The reference's SCS forward, NCHW: an ``as_strided`` unfold, norms over each patch, ``einsum``.

    As ``SharpenedCosineSimilarity.forward`` of the reference (``unfold2d``
    after zero padding; the division by the patch norms writes every patch).
    """
    import torch
    import torch.nn.functional as F

    if groups != 1:
        raise NotImplementedError("the unfold baseline has no groups")
    (pt, pb), (pl, pr) = padding
    out_channels, _, kh, kw = weight.shape
    sh, sw = stride
    x = F.pad(x, (pl, pr, pt, pb)).contiguous()  # as_strided below assumes NCHW strides
    n, c, h, w = x.shape
    h_out, w_out = (h - kh) // sh + 1, (w - kw) // sw + 1
    x = x.as_strided((n, c, h_out, w_out, kh, kw), (c * h * w, h * w, sh * w, sw, w, 1))
    x = x.reshape(n, c, h_out, w_out, -1)  # (N, C, H', W', kH·kW): the patches, materialised
    q_value = torch.square(q / Q_SCALE)
    x_norm = torch.sqrt(torch.sum(torch.square(x), (1, 4), keepdim=True) + eps) + q_value
    w_flat = weight.reshape(out_channels, -1, kh * kw)
    w_norm = torch.sqrt(torch.sum(torch.square(w_flat), (1, 2), keepdim=True) + eps) + q_value
    cos = torch.einsum("nchwl,vcl->nvhw", x / x_norm, w_flat / w_norm)
    sign = torch.sign(cos)
    out = (torch.abs(cos) + eps).pow(torch.square(p / P_SCALE).view(1, -1, 1, 1))
    return sign * out


def torch_two_pool_max_abs(x, kernel_size=2, stride=None, ceil_mode=False):
    """The reference ``MaxAbsPool2d``: two ``max_pool2d`` and a ``where``."""
    import torch
    import torch.nn.functional as F

    stride = kernel_size if stride is None else stride
    largest = F.max_pool2d(x, kernel_size, stride, ceil_mode=ceil_mode)
    smallest_negated = F.max_pool2d(-x, kernel_size, stride, ceil_mode=ceil_mode)
    return torch.where(largest >= smallest_negated, largest, -smallest_negated)


def jax_unfold_scs(x, kernel, p, q, stride=1, padding=0, feature_group_count=1, eps=1e-12, precision=None):
    """Reference-style SCS, NHWC: ``conv_general_dilated_patches``, normalised, a dot with the kernels."""
    import jax.numpy as jnp
    from jax import lax

    if feature_group_count != 1:
        raise NotImplementedError("the unfold baseline has no groups")
    kh, kw, c, out_features = kernel.shape
    patches = lax.conv_general_dilated_patches(
        x, (kh, kw), stride, padding, dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=precision
    )  # (N, H', W', C·kH·kW), channel-major
    q_value = jnp.square(q / Q_SCALE)
    x_norm = jnp.sqrt(jnp.sum(jnp.square(patches), -1, keepdims=True) + eps) + q_value
    w_flat = jnp.transpose(kernel, (2, 0, 1, 3)).reshape(-1, out_features)
    w_norm = jnp.sqrt(jnp.sum(jnp.square(w_flat), 0) + eps) + q_value
    cos = jnp.dot(patches / x_norm, w_flat / w_norm, precision=precision)
    return jnp.sign(cos) * jnp.power(jnp.abs(cos) + eps, jnp.square(p / P_SCALE))


def jax_two_pool_max_abs(x, kernel_size=2, stride=None, ceil_mode=False):
    """MaxAbsPool as two ``reduce_window`` maxima, the straightforward JAX form."""
    import jax.numpy as jnp
    from jax import lax

    from scs_jax.functional import pool_output_size

    k = kernel_size if isinstance(kernel_size, tuple) else (kernel_size, kernel_size)
    s = k if stride is None else (stride if isinstance(stride, tuple) else (stride, stride))
    pads = [
        (0, max((pool_output_size(size, kk, ss, ceil_mode) - 1) * ss + kk - size, 0))
        for size, kk, ss in zip(x.shape[1:3], k, s)
    ]
    window, strides = (1, *k, 1), (1, *s, 1)
    padding = ((0, 0), *pads, (0, 0))
    largest = lax.reduce_window(x, -jnp.inf, lax.max, window, strides, padding)
    smallest_negated = lax.reduce_window(-x, -jnp.inf, lax.max, window, strides, padding)
    return jnp.where(largest >= smallest_negated, largest, -smallest_negated)


def _then_pool(scs, pool):
    """The fused layer-and-pool entry point done the reference's way: the layer, then the pool."""

    def layer_then_pool(*args, pool_kernel_size=2, pool_stride=None, ceil_mode=False):
        return pool(scs(*args), pool_kernel_size, pool_stride, ceil_mode)

    return layer_then_pool


@contextlib.contextmanager
def _baseline_in(layers, scs, pool):
    """``layers.SF`` replaced, inside the block, by its names with ``scs`` and ``pool`` swapped in."""
    real = layers.SF
    names = {name: getattr(real, name) for name in dir(real) if not name.startswith("__")}
    layers.SF = types.SimpleNamespace(**{
        **names,
        "sharpened_cosine_similarity": scs,
        "max_abs_pool": pool,
        "sharpened_cosine_similarity_max_abs_pool": _then_pool(scs, pool),
    })
    try:
        yield
    finally:
        layers.SF = real


def patched_torch():
    """``scs_torch.layers`` computes with the unfold baseline inside the block."""
    import scs_torch.layers as layers

    return _baseline_in(layers, torch_unfold_scs, torch_two_pool_max_abs)


def patched_jax():
    """``scs_jax.layers`` computes with the unfold baseline inside the block (trace the steps here)."""
    import scs_jax.layers as layers

    return _baseline_in(layers, jax_unfold_scs, jax_two_pool_max_abs)

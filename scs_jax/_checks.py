"""Checks of the arrays and arguments the functions receive (NHWC); errors name the argument.

The framework-free size checks are :mod:`scs_jax.shapes`; ``scs_torch._checks``
is the twin for torch tensors (NCHW).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .shapes import Padding, Size, check_eps, positive_int, positive_pair, resolve_padding


def check_input(x: jax.Array, channels: int | None, what: str) -> None:
    """Raise unless ``x`` is a non-empty 4-D floating-point array with ``channels`` channels.

    ``channels=None`` accepts any channel count; ``what`` names the caller in
    the channel-count message.
    """
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"x: expected a jax or numpy array, got {type(x).__name__}")
    if len(x.shape) != 4:
        raise ValueError(f"x: expected a 4-D array (N, H, W, C), got shape {tuple(x.shape)}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"x: expected a floating-point dtype, got {x.dtype}")
    if x.shape[0] == 0:
        raise ValueError(f"x: expected a batch of at least 1, got shape {tuple(x.shape)}")
    if channels is not None and x.shape[3] != channels:
        raise ValueError(
            f"x: {what} expects {channels} input channels (axis 3 of N, H, W, C), "
            f"got shape {tuple(x.shape)}"
        )


def check_similarity_arguments(
    x: jax.Array,
    kernel: jax.Array,
    p: jax.Array,
    q: jax.Array,
    stride: Size,
    padding: Padding,
    groups: int,
    eps: float,
    what: str,
) -> tuple[int, float, tuple[int, int], tuple[tuple[int, int], tuple[int, int]]]:
    """The SCS functions' arguments checked: ``feature_group_count``, ``eps``, the stride pair and the padding.

    Raises TypeError/ValueError naming the argument, the expected and the
    received value (an input smaller than the kernel once padded names ``x``).
    """
    groups = positive_int("feature_group_count", groups)
    if len(kernel.shape) != 4:
        raise ValueError(
            "kernel: expected a 4-D array (kH, kW, C_in // feature_group_count, C_out), "
            f"got shape {tuple(kernel.shape)}"
        )
    kh, kw, group_in, out_features = kernel.shape
    if tuple(p.shape) != (out_features,):
        raise ValueError(f"p: expected shape ({out_features},) (one per output channel), got {tuple(p.shape)}")
    if int(np.prod(q.shape)) != 1:
        raise ValueError(f"q: expected one value (shape (1,)), got shape {tuple(q.shape)}")
    eps = check_eps(eps)
    if out_features % groups:
        raise ValueError(
            f"feature_group_count: out_features ({out_features}) must be divisible by "
            f"feature_group_count, got {groups}"
        )
    check_input(x, group_in * groups, what)
    strides = positive_pair("stride", stride)
    (pt, pb), (pl, pr) = pads = resolve_padding(padding, (kh, kw), strides)
    h, w = x.shape[1:3]
    if h + pt + pb < kh or w + pl + pr < kw:
        raise ValueError(
            f"x: padded spatial size ({h + pt + pb}, {w + pl + pr}) is smaller than "
            f"kernel_size ({kh}, {kw}); got input shape {tuple(x.shape)}"
        )
    return groups, eps, strides, pads

"""Checks of the tensors and arguments the functions receive (NCHW); errors name the argument.

The framework-free size checks are :mod:`scs_torch.shapes`; ``scs_jax._checks``
is the twin for JAX arrays (NHWC).
"""

from __future__ import annotations

import torch

from .shapes import Padding, Size, check_eps, positive_int, positive_pair, resolve_padding


def check_input(x: torch.Tensor, channels: int | None, what: str) -> None:
    """Raise unless ``x`` is a non-empty 4-D floating-point tensor with ``channels`` channels.

    ``channels=None`` accepts any channel count; ``what`` names the caller in
    the channel-count message.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"x: expected a 4-D tensor (N, C, H, W), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"x: expected a floating-point dtype, got {x.dtype}")
    if x.shape[0] == 0:
        raise ValueError(f"x: expected a batch of at least 1, got shape {tuple(x.shape)}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(
            f"x: {what} expects {channels} input channels (dim 1 of N, C, H, W), "
            f"got shape {tuple(x.shape)}"
        )


def check_similarity_arguments(
    x: torch.Tensor,
    weight: torch.Tensor,
    p: torch.Tensor,
    q: torch.Tensor,
    stride: Size,
    padding: Padding,
    groups: int,
    eps: float,
    what: str,
) -> tuple[int, float, tuple[int, int], tuple[tuple[int, int], tuple[int, int]]]:
    """The SCS functions' arguments checked: ``groups``, ``eps``, the stride pair and the padding.

    Raises TypeError/ValueError naming the argument, the expected and the
    received value (an input smaller than the kernel once padded names ``x``).
    """
    groups = positive_int("groups", groups)
    if weight.dim() != 4:
        raise ValueError(
            f"weight: expected a 4-D tensor (C_out, C_in // groups, kH, kW), got shape {tuple(weight.shape)}"
        )
    out_channels, group_in, kh, kw = weight.shape
    if tuple(p.shape) != (out_channels,):
        raise ValueError(f"p: expected shape ({out_channels},) (one per output channel), got {tuple(p.shape)}")
    if q.numel() != 1:
        raise ValueError(f"q: expected one value (shape (1,)), got shape {tuple(q.shape)}")
    eps = check_eps(eps)
    if out_channels % groups:
        raise ValueError(
            f"groups: out_channels ({out_channels}) must be divisible by groups, got groups={groups}"
        )
    check_input(x, group_in * groups, what)
    if x.dtype != weight.dtype:
        raise TypeError(f"x: expected dtype {weight.dtype} (the weight's), got {x.dtype}")
    strides = positive_pair("stride", stride)
    (pt, pb), (pl, pr) = pads = resolve_padding(padding, (kh, kw), strides)
    h, w = x.shape[2:]
    if h + pt + pb < kh or w + pl + pr < kw:
        raise ValueError(
            f"x: padded spatial size ({h + pt + pb}, {w + pl + pr}) is smaller than "
            f"kernel_size ({kh}, {kw}); got input shape {tuple(x.shape)}"
        )
    return groups, eps, strides, pads

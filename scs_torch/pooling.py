"""MaxAbsPool as a pure PyTorch function (NCHW): each window's element of largest magnitude.

:class:`scs_torch.MaxAbsPool2d` is the module over :func:`max_abs_pool`;
``scs_jax.pooling`` holds the JAX twin (NHWC).
"""

from __future__ import annotations

import torch

from ._checks import check_input
from ._maxabs import MaxAbsPoolFunction, max_abs_pool_values
from .shapes import Size, check_ceil_mode, pool_output_size, positive_pair

__all__ = ["max_abs_pool"]


def max_abs_pool(
    x: torch.Tensor, kernel_size: Size = 2, stride: Size | None = None, ceil_mode: bool = False
) -> torch.Tensor:
    """In each window, the element of largest magnitude, with its sign.

    A tie between ``+a`` and ``-a`` returns ``+a`` (the reference compares
    ``max(x) >= max(-x)``); among equal elements the gradient goes to the
    first in row-major order, as ``torch.nn.MaxPool2d`` routes it.

    Args:
        x: ``(N, C, H, W)``, floating point.
        kernel_size: int or pair.
        stride: int or pair; ``None`` means ``kernel_size``.
        ceil_mode: keep a last partial window at the bottom/right edge when it
            starts inside the input (``torch.nn.MaxPool2d``'s rule, also for an
            input smaller than the kernel).

    Returns:
        ``(N, C, H_out, W_out)``, the dtype of ``x``, sizes as
        ``torch.nn.MaxPool2d``'s (:func:`scs_torch.shapes.pool_output_size`).
        NaNs propagate.

    Raises:
        TypeError, ValueError: naming the argument, the expected and received
        value; ``x`` where ``torch.nn.MaxPool2d`` finds no window.

    Source: the ``MaxAbsPool2d`` of brohrer/sharpened_cosine_similarity_torch.

    Examples:
        >>> import torch
        >>> x = torch.tensor([[[[1.0, -3.0, 2.0], [0.5, 2.0, -4.0]]]])
        >>> max_abs_pool(x, kernel_size=2)
        tensor([[[[-3.]]]])
        >>> max_abs_pool(x, kernel_size=2, ceil_mode=True)
        tensor([[[[-3., -4.]]]])
    """
    kh, kw = positive_pair("kernel_size", kernel_size)
    sh, sw = (kh, kw) if stride is None else positive_pair("stride", stride)
    check_ceil_mode(ceil_mode)
    check_input(x, None, "max_abs_pool")
    pool_output_size(x.shape[2], kh, sh, ceil_mode, name="x")
    pool_output_size(x.shape[3], kw, sw, ceil_mode, name="x")
    if torch.is_grad_enabled() and x.requires_grad:
        return MaxAbsPoolFunction.apply(x, (kh, kw), (sh, sw), ceil_mode)[0]
    return max_abs_pool_values(x, (kh, kw), (sh, sw), ceil_mode)

"""MaxAbsPool as a pure ``jax.numpy`` function (NHWC): each window's element of largest magnitude.

:class:`scs_jax.MaxAbsPool` is the module over :func:`max_abs_pool`;
``scs_torch.pooling`` holds the PyTorch twin (NCHW).
"""

from __future__ import annotations

import jax

from ._checks import check_input
from ._maxabs import max_abs_pool_blocks, max_abs_pool_gather
from .shapes import Size, check_ceil_mode, pool_output_size, positive_pair

__all__ = ["max_abs_pool"]


def max_abs_pool(
    x: jax.Array, kernel_size: Size = 2, stride: Size | None = None, ceil_mode: bool = False
) -> jax.Array:
    """In each window, the element of largest magnitude, with its sign.

    A tie between ``+a`` and ``-a`` returns ``+a`` (the reference compares
    ``max(x) >= max(-x)``); among equal elements the gradient goes to the
    first in row-major order, exactly as ``torch.nn.MaxPool2d`` routes it
    (``jax.grad`` of a ``max`` would split a tie's gradient equally). Windows
    that do not overlap (``stride >= kernel_size``, the demos' case) take a
    custom VJP: ``reduce_window`` maxima and minima forward, and backward one
    elementwise pass that sends each window's gradient to its first element
    equal to the returned value. Overlapping windows are laid out on a last
    axis (one strided slice per kernel offset), the first arg-max and arg-min
    picked there and the chosen element gathered with ``take_along_axis``.

    Args:
        x: ``(N, H, W, C)``, floating point.
        kernel_size: int or pair.
        stride: int or pair; ``None`` means ``kernel_size``.
        ceil_mode: keep a last partial window at the bottom/right edge when it
            starts inside the input (``torch.nn.MaxPool2d``'s rule, also for an
            input smaller than the kernel).

    Returns:
        ``(N, H_out, W_out, C)``, the dtype of ``x``, sizes as
        ``torch.nn.MaxPool2d``'s (:func:`scs_jax.shapes.pool_output_size`).
        NaNs propagate.

    Raises:
        TypeError, ValueError: naming the argument, the expected and received
        value; ``x`` where ``torch.nn.MaxPool2d`` finds no window.

    Source: the ``MaxAbsPool2d`` of brohrer/sharpened_cosine_similarity_torch.

    Examples:
        >>> import jax.numpy as jnp
        >>> x = jnp.array([[1.0, -3.0, 2.0], [0.5, 2.0, -4.0]]).reshape(1, 2, 3, 1)
        >>> max_abs_pool(x, kernel_size=2)[..., 0]
        Array([[[-3.]]], dtype=float32)
        >>> max_abs_pool(x, kernel_size=2, ceil_mode=True)[..., 0]
        Array([[[-3., -4.]]], dtype=float32)
    """
    kh, kw = positive_pair("kernel_size", kernel_size)
    sh, sw = (kh, kw) if stride is None else positive_pair("stride", stride)
    check_ceil_mode(ceil_mode)
    check_input(x, None, "max_abs_pool")
    h_out = pool_output_size(x.shape[1], kh, sh, ceil_mode, name="x")
    w_out = pool_output_size(x.shape[2], kw, sw, ceil_mode, name="x")
    if sh >= kh and sw >= kw:
        return max_abs_pool_blocks(x, (kh, kw), (sh, sw), (h_out, w_out))
    return max_abs_pool_gather(x, (kh, kw), (sh, sw), (h_out, w_out))

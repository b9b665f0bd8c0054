"""``torch.nn`` modules: :class:`SharpenedCosineSimilarity2d` and :class:`MaxAbsPool2d` (NCHW).

Thin modules over :mod:`scs_torch.functional`; ``scs_jax.layers`` holds the
Flax NNX twins with the same parameters, initial distributions and maths.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from . import functional as SF
from .shapes import (Padding, Size, check_ceil_mode, check_eps, positive_float, positive_int, positive_pair,
                     resolve_padding)

__all__ = ["SharpenedCosineSimilarity2d", "MaxAbsPool2d"]


class SharpenedCosineSimilarity2d(nn.Module):
    """Sharpened cosine similarity layer, a drop-in for ``nn.Conv2d`` (NCHW, no bias).

    ``out = sign(cos) · (|cos| + eps) ** p`` with
    ``cos = (s · k) / ((‖s‖ + q)(‖k‖ + q))`` for every input patch ``s`` and
    kernel ``k``; see :mod:`scs_torch.functional` for the full equation.

    Parameters (the reference's parameterization, shared with ``scs_jax``):
        weight: ``(out_channels, in_channels // groups, kH, kW)``, Xavier/Glorot
            uniform (``nn.init.xavier_uniform_``).
        p: ``(out_channels,)``, the exponent is ``(p / 10)²``; starts where the
            exponent is ``exponent_init`` (``sqrt(2) · 10`` for the default 2).
        q: ``(1,)``, the floor added to both norms is ``(q / 100)²``; starts where
            the floor is ``floor_init`` (10 for the default 0.01).

    Args:
        in_channels, out_channels: channel counts, positive, divisible by ``groups``.
        kernel_size: int or pair.
        stride: int or pair.
        padding: int, pair, ``((top, bottom), (left, right))``, ``"valid"`` or ``"same"``.
        groups: channel groups (``in_channels`` for depthwise).
        eps: see :func:`scs_torch.functional.sharpened_cosine_similarity`.
        device, dtype: of the parameters, as for ``nn.Conv2d``.
        exponent_init: the exponent ``(p / 10)²`` every output channel starts at
            (positive; default 2, as the reference).
        floor_init: the floor ``(q / 100)²`` starts at (positive; default 0.01,
            as the reference).

    Shapes: input ``(N, in_channels, H, W)`` -> output ``(N, out_channels, H_out, W_out)``
    with ``conv2d``'s output sizes.

    Raises:
        ValueError, TypeError: at construction for impossible configurations,
        and in ``forward`` for bad inputs; messages name the argument.

    Source: brohrer/sharpened_cosine_similarity_torch,
    https://github.com/brohrer/sharpened_cosine_similarity_torch .

    Examples:
        >>> import torch
        >>> layer = SharpenedCosineSimilarity2d(1, 8, kernel_size=3, padding=1)
        >>> layer
        SharpenedCosineSimilarity2d(1, 8, kernel_size=(3, 3), stride=(1, 1), padding=((1, 1), (1, 1)), groups=1, eps=1e-12)
        >>> x = torch.rand(2, 1, 6, 6)
        >>> layer(x).shape
        torch.Size([2, 8, 6, 6])
        >>> layer(x, pool=MaxAbsPool2d(2)).shape  # pool(layer(x)), computed pool first
        torch.Size([2, 8, 3, 3])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Size,
        stride: Size = 1,
        padding: Padding = 0,
        groups: int = 1,
        eps: float = SF.EPS,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        exponent_init: float = SF.EXPONENT_INIT,
        floor_init: float = SF.FLOOR_INIT,
    ) -> None:
        super().__init__()
        in_channels = positive_int("in_channels", in_channels)
        out_channels = positive_int("out_channels", out_channels)
        groups = positive_int("groups", groups)
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"groups: in_channels ({in_channels}) and out_channels ({out_channels}) "
                f"must both be divisible by groups, got groups={groups}"
            )
        eps = check_eps(eps)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = positive_pair("kernel_size", kernel_size)
        self.stride = positive_pair("stride", stride)
        self.padding = resolve_padding(padding, self.kernel_size, self.stride)
        self.groups = groups
        self.eps = eps
        self.exponent_init = positive_float("exponent_init", exponent_init)
        self.floor_init = positive_float("floor_init", floor_init)
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(
            torch.empty((out_channels, in_channels // groups, *self.kernel_size), **factory)
        )
        self.p = nn.Parameter(torch.empty((out_channels,), **factory))
        self.q = nn.Parameter(torch.empty((1,), **factory))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-draw ``weight`` (Xavier uniform) and reset ``p``, ``q`` to their initial values."""
        nn.init.xavier_uniform_(self.weight)
        nn.init.constant_(self.p, SF.p_for_exponent(self.exponent_init))
        nn.init.constant_(self.q, SF.q_for_floor(self.floor_init))

    def forward(self, x: torch.Tensor, pool: MaxAbsPool2d | None = None) -> torch.Tensor:
        """The layer's output, ``(N, out_channels, H_out, W_out)``.

        With ``pool`` (a :class:`MaxAbsPool2d`), ``pool(self(x))`` computed
        pool first (:func:`scs_torch.functional.sharpened_cosine_similarity_max_abs_pool`):
        the same values (up to how rounding ties are broken, see there), about a
        quarter of the elementwise work for 2×2 windows.
        """
        if pool is None:
            return SF.sharpened_cosine_similarity(
                x, self.weight, self.p, self.q, self.stride, self.padding, self.groups, self.eps
            )
        if not isinstance(pool, MaxAbsPool2d):
            raise TypeError(f"pool: expected a MaxAbsPool2d or None, got {type(pool).__name__}")
        return SF.sharpened_cosine_similarity_max_abs_pool(
            x, self.weight, self.p, self.q, self.stride, self.padding, self.groups, self.eps,
            pool_kernel_size=pool.kernel_size, pool_stride=pool.stride, ceil_mode=pool.ceil_mode,
        )

    def extra_repr(self) -> str:
        inits = "".join(f", {name}={value}" for name, value, default in (
            ("exponent_init", self.exponent_init, SF.EXPONENT_INIT),
            ("floor_init", self.floor_init, SF.FLOOR_INIT))
            if value != default)
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, groups={self.groups}, eps={self.eps}"
            f"{inits}"
        )


class MaxAbsPool2d(nn.Module):
    """Max-magnitude pooling: each window's element of largest ``|x|``, sign kept (NCHW).

    Ties ``+a``/``-a`` return ``+a``. Args as ``nn.MaxPool2d`` (no padding):
    ``kernel_size`` (int or pair), ``stride`` (default ``kernel_size``),
    ``ceil_mode``. See :func:`scs_torch.functional.max_abs_pool`; output sizes
    are ``nn.MaxPool2d``'s, also with ``ceil_mode`` on inputs smaller than
    the kernel.

    Source: brohrer/sharpened_cosine_similarity_torch.

    Examples:
        >>> import torch
        >>> pool = MaxAbsPool2d(2, ceil_mode=True)
        >>> pool
        MaxAbsPool2d(kernel_size=(2, 2), stride=(2, 2), ceil_mode=True)
        >>> pool(torch.tensor([[[[1.0, -2.0, 0.5], [0.0, 1.5, -3.0]]]]))
        tensor([[[[-2., -3.]]]])
        >>> pool(torch.ones(1, 1, 1, 1)).shape  # as nn.MaxPool2d(2, ceil_mode=True)
        torch.Size([1, 1, 1, 1])
    """

    def __init__(self, kernel_size: Size, stride: Size | None = None, ceil_mode: bool = False) -> None:
        super().__init__()
        self.kernel_size = positive_pair("kernel_size", kernel_size)
        self.stride = self.kernel_size if stride is None else positive_pair("stride", stride)
        self.ceil_mode = check_ceil_mode(ceil_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return SF.max_abs_pool(x, self.kernel_size, self.stride, self.ceil_mode)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, ceil_mode={self.ceil_mode}"

"""Flax NNX modules: :class:`SharpenedCosineSimilarity` and :class:`MaxAbsPool` (NHWC).

Thin modules over :mod:`scs_jax.functional`; ``scs_torch.layers`` holds the
PyTorch twins with the same parameters, initial distributions and maths.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from flax import typing as flax_typing
from flax.nnx.nn import dtypes

from . import functional as SF
from ._checks import check_input
from .shapes import (Padding, Size, check_ceil_mode, check_eps, positive_float, positive_int, positive_pair,
                     resolve_padding)

__all__ = ["SharpenedCosineSimilarity", "MaxAbsPool"]


class SharpenedCosineSimilarity(nnx.Module):
    """Sharpened cosine similarity layer, a drop-in for ``nnx.Conv`` (NHWC, no bias).

    ``out = sign(cos) · (|cos| + eps) ** p`` with
    ``cos = (s · k) / ((‖s‖ + q)(‖k‖ + q))`` for every input patch ``s`` and
    kernel ``k``; see :mod:`scs_jax.functional` for the full equation.

    Parameters (the reference's parameterization, shared with ``scs_torch``):
        kernel: ``(kH, kW, in_features // feature_group_count, out_features)``,
            Xavier/Glorot uniform over the same fans as torch's
            ``xavier_uniform_`` on ``(out, in, kH, kW)``.
        p: ``(out_features,)``, the exponent is ``(p / 10)²``; starts where the
            exponent is ``exponent_init`` (``sqrt(2) · 10`` for the default 2).
        q: ``(1,)``, the floor added to both norms is ``(q / 100)²``; starts where
            the floor is ``floor_init`` (10 for the default 0.01).

    Args:
        in_features, out_features: channel counts, positive, divisible by
            ``feature_group_count``.
        kernel_size: int or pair.
        stride: int or pair.
        padding: int, pair, ``((top, bottom), (left, right))``, ``"valid"`` or ``"same"``.
        feature_group_count: channel groups (``in_features`` for depthwise).
        eps: see :func:`scs_jax.functional.sharpened_cosine_similarity`.
        exponent_init: the exponent ``(p / 10)²`` every output feature starts at
            (positive; default 2, as the reference).
        floor_init: the floor ``(q / 100)²`` starts at (positive; default 0.01,
            as the reference).
        dtype: computation dtype (``None``: promote input and parameters).
        param_dtype: parameters' dtype (float32; pass ``jnp.float64`` under
            ``jax_enable_x64`` for float64 parameters).
        precision: convolution precision (see the functional form).
        kernel_init: initializer of ``kernel``.
        rngs: ``nnx.Rngs`` with a ``params`` stream.

    Shapes: input ``(N, H, W, in_features)`` -> output ``(N, H_out, W_out, out_features)``.

    Raises:
        ValueError, TypeError: at construction for impossible configurations,
        and in ``__call__`` for bad inputs; messages name the argument.

    Source: brohrer/sharpened_cosine_similarity_torch,
    https://github.com/brohrer/sharpened_cosine_similarity_torch .

    Examples:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> layer = SharpenedCosineSimilarity(1, 8, kernel_size=3, padding=1, rngs=nnx.Rngs(0))
        >>> layer.kernel.shape, layer.p.shape, layer.q.shape
        ((3, 3, 1, 8), (8,), (1,))
        >>> x = jnp.ones((2, 6, 6, 1), jnp.float32)
        >>> layer(x).shape
        (2, 6, 6, 8)
        >>> layer(x, pool=MaxAbsPool(2)).shape  # pool(layer(x)), computed pool first
        (2, 3, 3, 8)
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: Size,
        *,
        stride: Size = 1,
        padding: Padding = 0,
        feature_group_count: int = 1,
        eps: float = SF.EPS,
        exponent_init: float = SF.EXPONENT_INIT,
        floor_init: float = SF.FLOOR_INIT,
        dtype: flax_typing.Dtype | None = None,
        param_dtype: flax_typing.Dtype = jnp.float32,
        precision: flax_typing.PrecisionLike = None,
        kernel_init: flax_typing.Initializer = nnx.initializers.xavier_uniform(),
        rngs: nnx.Rngs,
    ) -> None:
        in_features = positive_int("in_features", in_features)
        out_features = positive_int("out_features", out_features)
        feature_group_count = positive_int("feature_group_count", feature_group_count)
        if in_features % feature_group_count or out_features % feature_group_count:
            raise ValueError(
                f"feature_group_count: in_features ({in_features}) and out_features "
                f"({out_features}) must both be divisible by feature_group_count, "
                f"got {feature_group_count}"
            )
        eps = check_eps(eps)
        exponent_init = positive_float("exponent_init", exponent_init)
        floor_init = positive_float("floor_init", floor_init)
        self.in_features = in_features
        self.out_features = out_features
        self.kernel_size = positive_pair("kernel_size", kernel_size)
        self.stride = positive_pair("stride", stride)
        self.padding = resolve_padding(padding, self.kernel_size, self.stride)
        self.feature_group_count = feature_group_count
        self.eps = eps
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.precision = precision
        kernel_shape = (*self.kernel_size, in_features // feature_group_count, out_features)
        self.kernel = nnx.Param(kernel_init(rngs.params(), kernel_shape, param_dtype))
        self.p = nnx.Param(jnp.full((out_features,), SF.p_for_exponent(exponent_init), param_dtype))
        self.q = nnx.Param(jnp.full((1,), SF.q_for_floor(floor_init), param_dtype))

    def __call__(self, x: jax.Array, pool: MaxAbsPool | None = None) -> jax.Array:
        """The layer's output, ``(N, H_out, W_out, out_features)``.

        With ``pool`` (a :class:`MaxAbsPool`), ``pool(self(x))`` computed pool
        first (:func:`scs_jax.functional.sharpened_cosine_similarity_max_abs_pool`):
        the same values (up to how rounding ties are broken, see there), about a
        quarter of the elementwise work for 2×2 windows.
        """
        check_input(x, self.in_features, type(self).__name__)
        x, kernel, p, q = dtypes.promote_dtype(
            (x, self.kernel[...], self.p[...], self.q[...]), dtype=self.dtype
        )
        if pool is None:
            return SF.sharpened_cosine_similarity(
                x, kernel, p, q, self.stride, self.padding, self.feature_group_count, self.eps,
                self.precision,
            )
        if not isinstance(pool, MaxAbsPool):
            raise TypeError(f"pool: expected a MaxAbsPool or None, got {type(pool).__name__}")
        return SF.sharpened_cosine_similarity_max_abs_pool(
            x, kernel, p, q, self.stride, self.padding, self.feature_group_count, self.eps,
            self.precision, pool_kernel_size=pool.kernel_size, pool_stride=pool.stride,
            ceil_mode=pool.ceil_mode,
        )


class MaxAbsPool(nnx.Module):
    """Max-magnitude pooling: each window's element of largest ``|x|``, sign kept (NHWC).

    Ties ``+a``/``-a`` return ``+a``. Args as ``torch.nn.MaxPool2d`` (no
    padding): ``kernel_size`` (int or pair), ``stride`` (default
    ``kernel_size``), ``ceil_mode``. See :func:`scs_jax.functional.max_abs_pool`;
    output sizes are ``torch.nn.MaxPool2d``'s, also with ``ceil_mode`` on
    inputs smaller than the kernel.

    Source: brohrer/sharpened_cosine_similarity_torch.

    Examples:
        >>> import jax.numpy as jnp
        >>> pool = MaxAbsPool(2, ceil_mode=True)
        >>> x = jnp.array([[1.0, -2.0, 0.5], [0.0, 1.5, -3.0]]).reshape(1, 2, 3, 1)
        >>> pool(x)[..., 0]
        Array([[[-2., -3.]]], dtype=float32)
        >>> pool(jnp.ones((1, 1, 1, 1))).shape  # as torch.nn.MaxPool2d(2, ceil_mode=True)
        (1, 1, 1, 1)
    """

    def __init__(self, kernel_size: Size, stride: Size | None = None, ceil_mode: bool = False) -> None:
        self.kernel_size = positive_pair("kernel_size", kernel_size)
        self.stride = self.kernel_size if stride is None else positive_pair("stride", stride)
        self.ceil_mode = check_ceil_mode(ceil_mode)

    def __call__(self, x: jax.Array) -> jax.Array:
        return SF.max_abs_pool(x, self.kernel_size, self.stride, self.ceil_mode)

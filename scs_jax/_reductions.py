"""Sums over channels, over batch and positions, and over windows (NHWC); ``scs_torch._reductions`` is the twin.

Some sums are written as products with a ones vector: on CPU, XLA (jaxlib
0.10) runs those reductions several times slower than the product.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


def sum_minor(x: jax.Array) -> jax.Array:
    """``x.sum(-1, keepdims=True)`` as a product with a ones vector (full precision).

    XLA:CPU (jaxlib 0.10) hands a reduction over a short minor axis to a
    library kernel (YNNPACK) that was measured ~5x slower here than a
    matrix-vector product.
    """
    ones = jnp.ones((x.shape[-1], 1), x.dtype)
    return jnp.dot(x, ones, precision=lax.Precision.HIGHEST)


def sum_leading(x: jax.Array, ndim: int) -> jax.Array:
    """``x`` summed over all but its last ``ndim`` axes, as a product with a ones vector.

    A dot (full precision) instead of a reduction for the same reason as
    :func:`sum_minor`: XLA:CPU's library reduction over the batch and
    spatial axes was ~4x slower here than the matrix-vector product.
    """
    tail = x.shape[x.ndim - ndim :]
    flat = x.reshape(-1, int(np.prod(tail)))
    ones = jnp.ones((flat.shape[0],), flat.dtype)
    return jnp.dot(ones, flat, precision=lax.Precision.HIGHEST).reshape(tail)


def window_sum(
    x: jax.Array,
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[tuple[int, int], tuple[int, int]],
) -> jax.Array:
    """Sum over every ``kH × kW`` window of ``x`` ``(N, H, W, G)``, zero padding ``((t, b), (l, r))``.

    ``reduce_window`` add: XLA runs it as one loop (a ones-kernel
    convolution cost as much as the layer's main convolution). The twin of
    ``scs_torch``'s ``window_sum``, which adds strided slices instead.
    """
    (kh, kw), (sh, sw), (rows, cols) = kernel_size, stride, padding
    return lax.reduce_window(
        x, np.zeros((), x.dtype), lax.add, (1, kh, kw, 1), (1, sh, sw, 1), ((0, 0), rows, cols, (0, 0))
    )

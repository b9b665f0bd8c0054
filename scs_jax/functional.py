"""Sharpened Cosine Similarity and MaxAbsPool as pure ``jax.numpy`` functions (NHWC).

The maths, for every input patch ``s`` (all input channels of a group under the
kernel window, zero padding included) and every kernel ``k``::

    ‖v‖ = sqrt(Σ v² + eps)
    cos = (s · k) / ((‖s‖ + q) · (‖k‖ + q))
    out = sign(cos) · (|cos| + eps) ** p

with ``p = (p_param / 10)²`` per output channel and ``q = (q_param / 100)²`` per
layer. This is the parameterization of Brandon Rohrer's reference PyTorch code,
https://github.com/brohrer/sharpened_cosine_similarity_torch (February 2022,
built on code by Ze Wang, Oliver Batchelor, Stephen Hogg and Raphael Pisoni),
after Raphael Pisoni's https://www.rpisoni.dev/posts/cossim-convolution/ .

``s · k / ‖k‖`` is one convolution with the kernels divided by their norms
first; ``‖s‖²`` is the squared input summed over each group's channels,
then summed over each window with ``lax.reduce_window`` (cheaper than a
ones-kernel convolution, the same values). Nothing is unfolded. The floor
``q`` enters as two factors, ``1 / (‖s‖ + q)`` per patch and
``‖k‖ / (‖k‖ + q)`` per output channel, so that ``d/dq`` is a sum of one small
term per output element. The division, the product, the power and their
derivatives are one ``jax.custom_vjp`` (``scs_jax._sharpen``), and MaxAbsPool
over windows that do not overlap is another (two ``reduce_window`` passes
forward, one elementwise routing pass backward; :mod:`scs_jax.pooling`).
Some sums are written as products with a ones vector: on CPU, XLA (jaxlib
0.10) runs those reductions several times slower than the product
(``scs_jax._reductions``).
``scs_torch.functional`` holds the same functions for PyTorch, NCHW.

Pool first: :func:`sharpened_cosine_similarity_max_abs_pool` gives in exact
arithmetic the two-step form's result. In floating point the sharpening can
give different cosines values of equal magnitude (every ``|c|`` far below
``eps`` gives ``±eps ** p``, since ``|c| + eps`` rounds to ``eps``; ``p < 1``
in float32 merges neighbouring values): the two-step form then breaks the
tie by sign (``+a``) and position, the pool-first one takes the largest
``|cos|``, so the output has the same magnitude but can have the other sign,
and the gradient goes to that element.

What ``eps`` guarantees (both precisions): every norm is at least
``sqrt(eps) = 1e-6``, so all-zero patches and all-zero kernels give
``cos = 0`` and finite values, and ``|cos| + eps >= eps`` keeps the power and
its logarithm finite. The gradients are bounded:
``|∂out/∂cos| = p (|cos| + eps)^(p-1) <= p · max(1, eps^(p-1))`` (at most
``p`` for ``p >= 1``; for ``p < 1`` the worst case is at ``cos = 0``, e.g.
``0.5 · 1e6`` for ``p = 0.5``), ``|∂cos/∂s| <= 2 / (‖s‖ + q) <= 2 / (1e-6 + q)``
and likewise for ``k``, and ``|∂out/∂p| <= |log(eps)| ≈ 27.6`` per element
times ``|out|`` (``out`` is 0 where ``cos`` is exactly 0). NaN inputs propagate.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax

from ._checks import check_similarity_arguments
from ._reductions import sum_minor, window_sum
from ._sharpen import sharpen
from .pooling import max_abs_pool
from .shapes import Padding, Size, check_ceil_mode, pool_output_size, positive_pair, resolve_padding

__all__ = [
    "P_SCALE",
    "Q_SCALE",
    "P_INIT",
    "Q_INIT",
    "EXPONENT_INIT",
    "FLOOR_INIT",
    "p_for_exponent",
    "q_for_floor",
    "EPS",
    "resolve_padding",
    "pool_output_size",
    "sharpened_cosine_similarity",
    "max_abs_pool",
    "sharpened_cosine_similarity_max_abs_pool",
]

#: ``p = (p_param / P_SCALE)²``; the reference's ``p_scale``.
P_SCALE = 10.0
#: ``q = (q_param / Q_SCALE)²``; the reference's ``q_scale``.
Q_SCALE = 100.0
#: Initial ``p_param``: ``sqrt(2) · 10``, so ``p`` starts at 2.
P_INIT = 2.0**0.5 * P_SCALE
#: Initial ``q_param``: 10, so ``q`` starts at 0.01.
Q_INIT = 10.0
#: Default ``eps`` inside the norms and under the power.
EPS = 1e-12
#: The layers' default ``exponent_init`` and ``floor_init``: ``P_INIT`` and ``Q_INIT``.
EXPONENT_INIT = 2.0
FLOOR_INIT = 0.01


def p_for_exponent(exponent: float) -> float:
    """The stored ``p`` whose exponent ``(p / P_SCALE)²`` is ``exponent`` (a positive float).

    The layers' ``exponent_init`` goes through here; ``p_for_exponent(2.0) == P_INIT``.

    Examples:
        >>> p_for_exponent(2.0) == P_INIT, p_for_exponent(4.0)
        (True, 20.0)
    """
    return P_SCALE * math.sqrt(exponent)


def q_for_floor(floor: float) -> float:
    """The stored ``q`` whose floor ``(q / Q_SCALE)²`` is ``floor`` (a positive float).

    The layers' ``floor_init`` goes through here; ``q_for_floor(0.01) == Q_INIT``.

    Examples:
        >>> q_for_floor(0.01) == Q_INIT, q_for_floor(0.25)
        (True, 50.0)
    """
    return Q_SCALE * math.sqrt(floor)


@jax.custom_vjp
def _cosine(dot, norm):
    """``dot / norm`` (the fused layer-and-pool's first step), with a hand-written backward.

    ``dot`` is ``(N, H', W', G, C_out // G)``, ``norm`` ``(N, H', W', G, 1)``.
    ``∂/∂dot = grad / norm`` and ``∂/∂norm = -Σ_channels (grad / norm) · cos``,
    the channel sum as ``scs_jax._reductions.sum_minor`` (autodiff's reduction was ~20 %
    slower for the whole layer here). ``scs_torch.functional``'s ``_CosineMaxAbsPool``
    does this division and the pool that follows in one autograd Function.
    """
    return dot / norm


def _cosine_forward(dot, norm):
    cos = dot / norm
    return cos, (cos, norm)


def _cosine_backward(residuals, grad):
    cos, norm = residuals
    grad_dot = grad / norm
    return grad_dot, -sum_minor(grad_dot * cos)


_cosine.defvjp(_cosine_forward, _cosine_backward)


def _similarity_terms(x, kernel, p, q, stride, padding, groups, eps: float, precision, what: str):
    """Checks the arguments; returns ``s·k / ‖k‖`` ``(N, H', W', G, C_out // G)``,
    ``‖s‖ + q`` ``(N, H', W', G, 1)``, the exponent and ``‖k‖ / (‖k‖ + q)``, both
    ``(G, C_out // G)``: ``cos = s·k/‖k‖ / (‖s‖ + q) · ‖k‖/(‖k‖ + q)``.

    The kernel's floor is a factor on the cosine rather than part of the
    convolution's kernels so that ``d/dq`` is a sum of one small term per
    output element (see ``scs_torch``'s twin for the measurements).
    """
    groups, eps, (sh, sw), pads = check_similarity_arguments(
        x, kernel, p, q, stride, padding, groups, eps, what
    )
    kh, kw, _, out_features = kernel.shape
    n, h, w, c = x.shape

    q_value = jnp.square(q / Q_SCALE)
    kernel_length = jnp.sqrt(jnp.square(kernel).sum((0, 1, 2)) + eps)  # ‖k‖, (C_out,)
    # s · k / ‖k‖ as one convolution with unit kernels (small arrays).
    dot = lax.conv_general_dilated(
        x,
        kernel / kernel_length,
        window_strides=(sh, sw),
        padding=pads,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=groups,
        precision=precision,
    )
    # ‖s‖²: squares summed over each group's channels, then over each window.
    square_sum = sum_minor(jnp.square(x).reshape(n, h, w, groups, c // groups))[..., 0]
    patch_square = window_sum(square_sum, (kh, kw), (sh, sw), pads)
    patch_norm = jnp.sqrt(patch_square + eps) + q_value  # (N, H', W', G)

    per_group = out_features // groups
    _, h_out, w_out, _ = dot.shape
    exponent = jnp.square(p / P_SCALE).reshape(groups, per_group)
    # ‖k‖ / (‖k‖ + q) as 1 / (1 + q / ‖k‖): 1, not inf / inf, where ‖k‖ overflows.
    scale = (1.0 / (1.0 + q_value / kernel_length)).reshape(groups, per_group)
    return dot.reshape(n, h_out, w_out, groups, per_group), patch_norm[..., None], exponent, scale


def sharpened_cosine_similarity(
    x: jax.Array,
    kernel: jax.Array,
    p: jax.Array,
    q: jax.Array,
    stride: Size = 1,
    padding: Padding = 0,
    feature_group_count: int = 1,
    eps: float = EPS,
    precision: lax.PrecisionLike = None,
) -> jax.Array:
    """Sharpened cosine similarity of every patch of ``x`` with every kernel.

    Args:
        x: input, ``(N, H, W, C_in)``, floating point.
        kernel: ``(kH, kW, C_in // feature_group_count, C_out)`` (Flax's HWIO layout).
        p: stored exponent parameter, ``(C_out,)``; the exponent is ``(p / 10)²``.
        q: stored floor parameter, ``(1,)``; the floor is ``(q / 100)²``.
        stride: int or pair.
        padding: int, pair, pair of pairs, ``"valid"`` or ``"same"`` (see
            :func:`resolve_padding`); zero padding, which takes part in the
            patch norms.
        feature_group_count: channel groups as in ``flax.nnx.Conv``; a patch's
            norm spans exactly the channels its kernel sees.
        eps: added under the square roots of the norms and to ``|cos|`` before
            the power, so that zero patches, zero kernels and ``cos = 0`` give
            finite values and gradients.
        precision: ``lax.Precision`` of the convolution (``None``: JAX's default;
            pin ``"highest"`` on GPU/TPU for float32 parity with torch).

    Returns:
        ``(N, H_out, W_out, C_out)``, the dtype of the arguments (arrays of
        different float dtypes must be promoted by the caller; the layer does).

    Raises:
        TypeError, ValueError: for a wrong rank, channel count, dtype, an
        empty batch, an input smaller than the kernel, or impossible groups;
        the message names the argument, the expected and the received value.

    The maths is the module docstring's; source: brohrer/sharpened_cosine_similarity_torch.

    Examples:
        >>> import jax.numpy as jnp
        >>> x = jnp.ones((1, 4, 4, 1), jnp.float32)
        >>> kernel = jnp.ones((3, 3, 1, 2), jnp.float32)
        >>> p, q = jnp.full((2,), P_INIT, jnp.float32), jnp.full((1,), Q_INIT, jnp.float32)
        >>> y = sharpened_cosine_similarity(x, kernel, p, q, padding=1)
        >>> y.shape, y.dtype
        ((1, 4, 4, 2), dtype('float32'))
        >>> round(float(y[0, 1, 1, 0]), 4)  # patch = kernel: (9 / 3.01²)²
        0.9868
    """
    dot, norm, exponent, scale = _similarity_terms(
        x, kernel, p, q, stride, padding, feature_group_count, eps, precision,
        "sharpened_cosine_similarity",
    )
    n, h_out, w_out, groups, per_group = dot.shape
    return sharpen(dot, norm, exponent, scale, eps).reshape(n, h_out, w_out, groups * per_group)


def _check_pool_fits(
    size: tuple[int, int], kernel_size: tuple[int, int], stride: tuple[int, int], ceil_mode: bool,
    x_shape: tuple[int, ...],
) -> None:
    """Raise, naming ``pool_kernel_size``, where ``torch.nn.MaxPool2d`` finds no window in the layer's output ``size``."""
    slack = (stride[0] - 1, stride[1] - 1) if ceil_mode else (0, 0)
    if size[0] + slack[0] >= kernel_size[0] and size[1] + slack[1] >= kernel_size[1]:
        return
    bound = f"the layer's output size {tuple(size)}"
    if ceil_mode:
        bound += f" plus pool_stride - 1 ({size[0] + slack[0]}, {size[1] + slack[1]}) with ceil_mode"
    raise ValueError(
        f"pool_kernel_size: expected at most {bound} (input shape {tuple(x_shape)}), "
        f"got {tuple(kernel_size)}"
    )


def sharpened_cosine_similarity_max_abs_pool(
    x: jax.Array, kernel: jax.Array, p: jax.Array, q: jax.Array,
    stride: Size = 1, padding: Padding = 0, feature_group_count: int = 1, eps: float = EPS,
    precision: lax.PrecisionLike = None, *, pool_kernel_size: Size = 2, pool_stride: Size | None = None,
    ceil_mode: bool = False,
) -> jax.Array:
    """``max_abs_pool(sharpened_cosine_similarity(x, ...), ...)`` computed pool first.

    The sharpening ``sign(c) · (|c| + eps) ** p`` keeps the sign and grows with
    ``|c|`` for every exponent ``p > 0``, so the element of largest magnitude in
    a window of the output is the element of largest ``|cos|`` there. This
    function pools the cosines (``+a`` winning ties with ``-a``, the gradient
    to the first of equal elements, as :func:`max_abs_pool`) and sharpens only
    the pooled values: a quarter of the elementwise work for 2×2 windows (the
    twin of ``scs_torch``'s function of the same name). In exact arithmetic the
    result is the two-step form's; in floating point see the module's "Pool first".

    Args:
        x, kernel, p, q, stride, padding, feature_group_count, eps, precision:
            as :func:`sharpened_cosine_similarity`.
        pool_kernel_size, pool_stride, ceil_mode: as ``kernel_size``,
            ``stride`` and ``ceil_mode`` of :func:`max_abs_pool`.

    Returns:
        ``(N, H_pool, W_pool, C_out)``, the dtype of the arguments.

    Raises:
        TypeError, ValueError: those of both functions, naming the argument
        (``pool_kernel_size``/``pool_stride`` for the pool's sizes).

    Source: brohrer/sharpened_cosine_similarity_torch (the layer and its
    ``MaxAbsPool2d``); the reordering is this project's.

    Examples:
        >>> x = jnp.sin(jnp.arange(49.0)).reshape(1, 7, 7, 1)
        >>> kernel = jnp.cos(jnp.arange(18.0)).reshape(3, 3, 1, 2)
        >>> p, q = jnp.full((2,), P_INIT), jnp.full((1,), Q_INIT)
        >>> y = sharpened_cosine_similarity_max_abs_pool(x, kernel, p, q, ceil_mode=True)
        >>> y.shape  # 7 - 3 + 1 = 5 positions, pooled 2 x 2 with ceil_mode
        (1, 3, 3, 2)
        >>> two_step = max_abs_pool(sharpened_cosine_similarity(x, kernel, p, q), 2, ceil_mode=True)
        >>> bool(jnp.allclose(y, two_step))
        True
    """
    kh, kw = positive_pair("pool_kernel_size", pool_kernel_size)
    sh, sw = (kh, kw) if pool_stride is None else positive_pair("pool_stride", pool_stride)
    check_ceil_mode(ceil_mode)
    dot, norm, exponent, scale = _similarity_terms(
        x, kernel, p, q, stride, padding, feature_group_count, eps, precision,
        "sharpened_cosine_similarity_max_abs_pool",
    )
    n, h_out, w_out, groups, per_group = dot.shape
    _check_pool_fits((h_out, w_out), (kh, kw), (sh, sw), ceil_mode, tuple(x.shape))
    cos = _cosine(dot, norm).reshape(n, h_out, w_out, groups * per_group)
    pooled = max_abs_pool(cos, (kh, kw), (sh, sw), ceil_mode)
    n, h_pool, w_pool, _ = pooled.shape
    # scale > 0 per channel: pooling dot / norm picks the elements pooling the cosines would.
    one = jnp.ones((n, h_pool, w_pool, groups, 1), pooled.dtype)
    out = sharpen(pooled.reshape(n, h_pool, w_pool, groups, per_group), one, exponent, scale, eps)
    return out.reshape(n, h_pool, w_pool, groups * per_group)

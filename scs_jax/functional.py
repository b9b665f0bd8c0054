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
derivatives are one ``jax.custom_vjp``
(``_sharpen``), and MaxAbsPool over windows that do not overlap is another
(two ``reduce_window`` passes forward, one elementwise routing pass backward).
Some sums are written as products with a ones vector: on CPU, XLA (jaxlib
0.10) runs those reductions several times slower than the product.
``scs_torch.functional`` holds the same functions for PyTorch, NCHW.

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

import functools
import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = [
    "P_SCALE",
    "Q_SCALE",
    "P_INIT",
    "Q_INIT",
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


def _pair(name: str, value) -> tuple[int, int]:
    if isinstance(value, bool):
        raise TypeError(f"{name}: expected an int or a pair of ints, got {value!r}")
    if isinstance(value, (int, np.integer)):
        return (int(value), int(value))
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value
    ):
        return (int(value[0]), int(value[1]))
    raise TypeError(f"{name}: expected an int or a pair of ints, got {value!r}")


def _positive_pair(name: str, value) -> tuple[int, int]:
    pair = _pair(name, value)
    if min(pair) < 1:
        raise ValueError(f"{name}: expected positive sizes, got {value!r}")
    return pair


def _check_eps(eps) -> float:
    """``eps`` as a float: finite and positive, else an error naming it."""
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real):
        raise TypeError(f"eps: expected a positive float, got {eps!r}")
    if not (math.isfinite(eps) and eps > 0):
        raise ValueError(f"eps: expected a positive finite float, got {eps!r}")
    return float(eps)


def resolve_padding(padding, kernel_size, stride=1) -> tuple[tuple[int, int], tuple[int, int]]:
    """Explicit zero padding ``((top, bottom), (left, right))``.

    Args:
        padding: an int, a pair ``(pad_h, pad_w)``, a pair of pairs
            ``((top, bottom), (left, right))``, ``"valid"`` (no padding) or
            ``"same"`` (either case; output size = input size; stride 1 only, as
            ``torch.nn.Conv2d``, with the extra pixel of an even kernel on the
            bottom/right, torch's and XLA's rule).
        kernel_size: int or pair.
        stride: int or pair; ``"same"`` requires 1.

    Raises:
        TypeError, ValueError: naming ``padding`` and the received value.
    """
    kh, kw = _positive_pair("kernel_size", kernel_size)
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return ((0, 0), (0, 0))
        if mode == "same":
            if _positive_pair("stride", stride) != (1, 1):
                raise ValueError(
                    f"padding: 'same' needs stride 1 (as torch.nn.Conv2d), got stride={stride!r}"
                )
            return ((kh - 1) // 2, kh - 1 - (kh - 1) // 2), ((kw - 1) // 2, kw - 1 - (kw - 1) // 2)
        raise ValueError(f"padding: expected 'valid', 'same', an int or pairs, got {padding!r}")
    if (
        isinstance(padding, (tuple, list))
        and len(padding) == 2
        and all(isinstance(p, (tuple, list)) for p in padding)
    ):
        pads = (_pair("padding", tuple(padding[0])), _pair("padding", tuple(padding[1])))
    else:
        ph, pw = _pair("padding", padding)
        pads = ((ph, ph), (pw, pw))
    if min(pads[0] + pads[1]) < 0:
        raise ValueError(f"padding: expected non-negative sizes, got {padding!r}")
    return pads


def pool_output_size(size: int, kernel_size: int, stride: int, ceil_mode: bool) -> int:
    """Output length of a pooling window sweep, ``torch.nn.MaxPool2d``'s rule (no padding).

    With ``ceil_mode`` a last, partial window is kept when it starts inside the
    input.

    Raises:
        ValueError: when ``size < kernel_size``.
    """
    if size < kernel_size:
        raise ValueError(
            f"x: spatial size {size} is smaller than the pooling kernel_size {kernel_size}"
        )
    if ceil_mode:
        out = -(-(size - kernel_size) // stride) + 1
        if (out - 1) * stride >= size:
            out -= 1
        return out
    return (size - kernel_size) // stride + 1


def _check_input(x, channels, what: str) -> None:
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


def _sum_minor(x):
    """``x.sum(-1, keepdims=True)`` as a product with a ones vector (full precision).

    XLA:CPU (jaxlib 0.10) hands a reduction over a short minor axis to a
    library kernel (YNNPACK) that was measured ~5x slower here than a
    matrix-vector product.
    """
    ones = jnp.ones((x.shape[-1], 1), x.dtype)
    return jnp.dot(x, ones, precision=lax.Precision.HIGHEST)


def _sum_leading(x, ndim: int):
    """``x`` summed over all but its last ``ndim`` axes, as a product with a ones vector.

    A dot (full precision) instead of a reduction for the same reason as
    :func:`_sum_minor`: XLA:CPU's library reduction over the batch and
    spatial axes was ~4x slower here than the matrix-vector product.
    """
    tail = x.shape[x.ndim - ndim :]
    flat = x.reshape(-1, int(np.prod(tail)))
    ones = jnp.ones((flat.shape[0],), flat.dtype)
    return jnp.dot(ones, flat, precision=lax.Precision.HIGHEST).reshape(tail)


def _window_sum(x, kernel_size, stride, padding):
    """Sum over every ``kH × kW`` window of ``x`` ``(N, H, W, G)``, zero padding ``((t, b), (l, r))``.

    ``reduce_window`` add: XLA runs it as one loop (a ones-kernel
    convolution cost as much as the layer's main convolution). The twin of
    ``scs_torch``'s ``_window_sum``, which adds strided slices instead.
    """
    (kh, kw), (sh, sw), (rows, cols) = kernel_size, stride, padding
    return lax.reduce_window(
        x, np.zeros((), x.dtype), lax.add, (1, kh, kw, 1), (1, sh, sw, 1), ((0, 0), rows, cols, (0, 0))
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _sharpen(dot, norm, exponent, scale, eps):
    """``sign(c) · (|c| + eps) ** e`` with ``c = dot / norm · scale``, with a hand-written backward.

    ``dot`` is ``(N, H', W', G, C_out // G)`` (the convolution with unit
    kernels, ``s · k / ‖k‖``), ``norm`` is ``‖s‖ + q``, ``(N, H', W', G, 1)``,
    ``exponent`` and ``scale`` (``‖k‖ / (‖k‖ + q)``) are ``(G, C_out // G)``.
    The power is one ``jnp.power`` (accurate to an ulp, unlike
    ``exp(e · log(|c| + eps))``); the backward uses
    ``∂out/∂dot = e · |out| / (|c| + eps) · scale / norm`` (0 at ``c = 0``, torch's
    and JAX's convention through ``sign``), ``∂out/∂norm`` and ``∂out/∂scale``
    as ``∓∂out/∂dot · dot`` divided by ``norm`` and ``scale``, and
    ``∂out/∂e = out · log(|c| + eps)``: one power instead of the two of
    ``jnp.power``'s derivative, the twin of ``scs_torch``'s ``_Sharpen``.
    """
    return _sharpen_forward(dot, norm, exponent, scale, eps)[0]


def _sharpen_forward(dot, norm, exponent, scale, eps):
    cos = dot / norm * scale
    # power, not exp(e · log(base)): the latter's rounding grows with |e · log(base)|
    # (float32: up to 7.6e-6 relative at base ~ 1e-12, against 6e-8 for power).
    out = jnp.sign(cos) * jnp.power(jnp.abs(cos) + eps, exponent)
    return out, (dot, norm, exponent, scale, out)


def _sharpen_backward(eps, residuals, grad):
    dot, norm, exponent, scale, out = residuals
    base = jnp.abs(dot / norm * scale) + eps
    grad_dot = grad * (exponent * scale * jnp.abs(out) / (base * norm))
    moment = grad_dot * dot
    grad_norm = -_sum_minor(moment) / norm
    grad_scale = _sum_leading(moment, 2) / scale
    grad_exponent = _sum_leading(grad * out * jnp.log(base), 2)
    return grad_dot, grad_norm, grad_exponent, grad_scale


_sharpen.defvjp(_sharpen_forward, _sharpen_backward)


@jax.custom_vjp
def _cosine(dot, norm):
    """``dot / norm`` (the fused layer-and-pool's first step), with a hand-written backward.

    ``dot`` is ``(N, H', W', G, C_out // G)``, ``norm`` ``(N, H', W', G, 1)``.
    ``∂/∂dot = grad / norm`` and ``∂/∂norm = -Σ_channels (grad / norm) · cos``,
    the channel sum as :func:`_sum_minor` (autodiff's reduction was ~20 %
    slower for the whole layer here). ``scs_torch``'s ``_CosineMaxAbsPool``
    does this division and the pool that follows in one autograd Function.
    """
    return dot / norm


def _cosine_forward(dot, norm):
    cos = dot / norm
    return cos, (cos, norm)


def _cosine_backward(residuals, grad):
    cos, norm = residuals
    grad_dot = grad / norm
    return grad_dot, -_sum_minor(grad_dot * cos)


_cosine.defvjp(_cosine_forward, _cosine_backward)


def _similarity_terms(x, kernel, p, q, stride, padding, groups, eps: float, precision, what: str):
    """Checks the arguments; returns ``s·k / ‖k‖`` ``(N, H', W', G, C_out // G)``,
    ``‖s‖ + q`` ``(N, H', W', G, 1)``, the exponent and ``‖k‖ / (‖k‖ + q)``, both
    ``(G, C_out // G)``: ``cos = s·k/‖k‖ / (‖s‖ + q) · ‖k‖/(‖k‖ + q)``.

    The kernel's floor is a factor on the cosine rather than part of the
    convolution's kernels so that ``d/dq`` is a sum of one small term per
    output element (see ``scs_torch``'s twin for the measurements).
    """
    if not isinstance(groups, (int, np.integer)) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"feature_group_count: expected a positive int, got {groups!r}")
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
    eps = _check_eps(eps)
    if out_features % groups:
        raise ValueError(
            f"feature_group_count: out_features ({out_features}) must be divisible by "
            f"feature_group_count, got {groups}"
        )
    _check_input(x, group_in * groups, what)
    sh, sw = _positive_pair("stride", stride)
    pads = resolve_padding(padding, (kh, kw), (sh, sw))
    (pt, pb), (pl, pr) = pads
    n, h, w, c = x.shape
    if h + pt + pb < kh or w + pl + pr < kw:
        raise ValueError(
            f"x: padded spatial size ({h + pt + pb}, {w + pl + pr}) is smaller than "
            f"kernel_size ({kh}, {kw}); got input shape {tuple(x.shape)}"
        )

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
    square_sum = _sum_minor(jnp.square(x).reshape(n, h, w, groups, c // groups))[..., 0]
    patch_square = _window_sum(square_sum, (kh, kw), (sh, sw), pads)
    patch_norm = jnp.sqrt(patch_square + eps) + q_value  # (N, H', W', G)

    per_group = out_features // groups
    _, h_out, w_out, _ = dot.shape
    exponent = jnp.square(p / P_SCALE).reshape(groups, per_group)
    # ‖k‖ / (‖k‖ + q) as 1 / (1 + q / ‖k‖): 1, not inf / inf, where ‖k‖ overflows.
    scale = (1.0 / (1.0 + q_value / kernel_length)).reshape(groups, per_group)
    return dot.reshape(n, h_out, w_out, groups, per_group), patch_norm[..., None], exponent, scale




def sharpened_cosine_similarity(
    x,
    kernel,
    p,
    q,
    stride=1,
    padding=0,
    feature_group_count: int = 1,
    eps: float = EPS,
    precision=None,
):
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
    """
    dot, norm, exponent, scale = _similarity_terms(
        x, kernel, p, q, stride, padding, feature_group_count, eps, precision,
        "sharpened_cosine_similarity",
    )
    n, h_out, w_out, groups, per_group = dot.shape
    return _sharpen(dot, norm, exponent, scale, eps).reshape(n, h_out, w_out, groups * per_group)


def max_abs_pool(x, kernel_size=2, stride=None, ceil_mode: bool = False):
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
            starts inside the input (``torch.nn.MaxPool2d``'s rule).

    Returns:
        ``(N, H_out, W_out, C)``, the dtype of ``x``. NaNs propagate.

    Raises:
        TypeError, ValueError: naming the argument, the expected and received value.

    Source: the ``MaxAbsPool2d`` of brohrer/sharpened_cosine_similarity_torch.
    """
    kh, kw = _positive_pair("kernel_size", kernel_size)
    sh, sw = (kh, kw) if stride is None else _positive_pair("stride", stride)
    if not isinstance(ceil_mode, bool):
        raise TypeError(f"ceil_mode: expected a bool, got {ceil_mode!r}")
    _check_input(x, None, "max_abs_pool")
    n, h, w, c = x.shape
    h_out = pool_output_size(h, kh, sh, ceil_mode)
    w_out = pool_output_size(w, kw, sw, ceil_mode)
    if sh >= kh and sw >= kw:
        return _max_abs_pool_blocks(x, (kh, kw), (sh, sw), (h_out, w_out))
    pad_h = max((h_out - 1) * sh + kh - h, 0)
    pad_w = max((w_out - 1) * sw + kw - w, 0)
    if pad_h or pad_w:
        x = jnp.pad(x, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)))
    windows = jnp.stack(
        [
            x[:, i : i + (h_out - 1) * sh + 1 : sh, j : j + (w_out - 1) * sw + 1 : sw, :]
            for i in range(kh)
            for j in range(kw)
        ],
        axis=-1,
    )  # (N, H_out, W_out, C, kH·kW), window elements in row-major order
    if pad_h or pad_w:
        rows = np.arange(h_out)[:, None, None, None] * sh + np.repeat(np.arange(kh), kw)
        cols = np.arange(w_out)[None, :, None, None] * sw + np.tile(np.arange(kw), kh)
        inside = (rows < h) & (cols < w)  # (H_out, W_out, 1, kH·kW)
        highs = jnp.where(inside, windows, -jnp.inf)
        lows = jnp.where(inside, windows, jnp.inf)
    else:
        highs = lows = windows
    largest = jnp.take_along_axis(windows, jnp.argmax(highs, -1)[..., None], -1)[..., 0]
    smallest = jnp.take_along_axis(windows, jnp.argmin(lows, -1)[..., None], -1)[..., 0]
    return jnp.where(largest >= -smallest, largest, smallest)


def _window_blocks(x, kernel_size, stride, out_size):
    """Windows that do not overlap (stride >= kernel) as axes 2 and 4 of a reshape.

    Returns ``(N, H_out, kH, W_out, kW, C)`` (zero padding past the bottom/right
    edge for ``ceil_mode``'s partial windows) and the boolean mask of the
    elements inside the input, broadcastable to it, or ``None`` when every
    window lies inside.
    """
    (kh, kw), (sh, sw), (h_out, w_out) = kernel_size, stride, out_size
    n, h, w, c = x.shape
    full_h, full_w = h_out * sh, w_out * sw
    if full_h > h or full_w > w:
        x = jnp.pad(x, ((0, 0), (0, max(full_h - h, 0)), (0, max(full_w - w, 0)), (0, 0)))
    blocks = x[:, :full_h, :full_w].reshape(n, h_out, sh, w_out, sw, c)[:, :, :kh, :, :kw]
    rows = np.arange(h_out)[:, None] * sh + np.arange(kh) < h  # (H_out, kH)
    cols = np.arange(w_out)[:, None] * sw + np.arange(kw) < w  # (W_out, kW)
    if rows.all() and cols.all():
        return blocks, None
    return blocks, rows[None, :, :, None, None, None] & cols[None, None, None, :, :, None]


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _max_abs_pool_blocks(x, kernel_size, stride, out_size):
    """``max_abs_pool`` for windows that do not overlap: ``reduce_window`` maxima and minima.

    The backward sends each window's upstream gradient to the first element,
    in row-major order, equal to the returned value (or the first NaN when
    the value is NaN): the first arg-max of ``x`` or of ``-x``, the element
    ``torch.nn.MaxPool2d`` routes it to, in one fused pass with no gather.
    """
    return _max_abs_pool_blocks_forward(x, kernel_size, stride, out_size)[0]


def _window_elements(blocks, inside):
    """The ``kH·kW`` elements of every window in row-major order, ``(N, H_out, W_out, C)`` each,
    with the mask of those inside the input (``None``: all inside)."""
    kh, kw = blocks.shape[2], blocks.shape[4]
    elements = [blocks[:, :, i, :, j] for i in range(kh) for j in range(kw)]
    if inside is None:
        return elements, [None] * len(elements)
    return elements, [inside[:, :, i, :, j] for i in range(kh) for j in range(kw)]


def _max_abs_pool_blocks_forward(x, kernel_size, stride, out_size):
    (kh, kw), (sh, sw), (h_out, w_out) = kernel_size, stride, out_size
    pads = ((0, 0), *[(0, max((o - 1) * s + k - size, 0)) for o, s, k, size in
                      zip(out_size, stride, kernel_size, x.shape[1:3])], (0, 0))
    # Window maxima and minima as reduce_window: XLA:CPU runs it as its own
    # loop over a materialised input. Written as elementwise maxima of the
    # window's slices instead, XLA fused the SCS layer's power into the pool's
    # loop, where it ran unvectorised (~5x slower in evaluation).
    largest = lax.reduce_window(x, -jnp.inf, lax.max, (1, kh, kw, 1), (1, sh, sw, 1), pads)
    smallest = lax.reduce_window(x, jnp.inf, lax.min, (1, kh, kw, 1), (1, sh, sw, 1), pads)
    out = jnp.where(largest >= -smallest, largest, smallest)
    return out, (x, out)


def _max_abs_pool_blocks_backward(kernel_size, stride, out_size, residuals, grad):
    x, out = residuals
    (kh, kw), (sh, sw), (h_out, w_out) = kernel_size, stride, out_size
    n, h, w, c = x.shape
    blocks, inside = _window_blocks(x, kernel_size, stride, out_size)
    elements, masks = _window_elements(blocks, inside)
    # The first element (row-major) equal to the returned value, or the first NaN.
    value_is_nan = jnp.isnan(out)
    first = jnp.full(out.shape, kh * kw, np.int32)
    for k in reversed(range(kh * kw)):
        hit = (elements[k] == out) | (jnp.isnan(elements[k]) & value_is_nan)
        if masks[k] is not None:
            hit = hit & masks[k]
        first = jnp.where(hit, np.int32(k), first)
    position = (np.arange(kh)[:, None] * kw + np.arange(kw)).astype(np.int32)[None, None, :, None, :, None]
    grad_blocks = jnp.where(
        position == first[:, :, None, :, None, :], grad[:, :, None, :, None, :], jnp.zeros((), grad.dtype)
    )
    if sh > kh or sw > kw:
        grad_blocks = jnp.pad(grad_blocks, ((0, 0), (0, 0), (0, sh - kh), (0, 0), (0, sw - kw), (0, 0)))
    grad_x = grad_blocks.reshape(n, h_out * sh, w_out * sw, c)[:, :h, :w]
    if h_out * sh < h or w_out * sw < w:
        grad_x = jnp.pad(grad_x, ((0, 0), (0, h - grad_x.shape[1]), (0, w - grad_x.shape[2]), (0, 0)))
    return (grad_x,)


_max_abs_pool_blocks.defvjp(_max_abs_pool_blocks_forward, _max_abs_pool_blocks_backward)


def sharpened_cosine_similarity_max_abs_pool(
    x,
    kernel,
    p,
    q,
    stride=1,
    padding=0,
    feature_group_count: int = 1,
    eps: float = EPS,
    precision=None,
    *,
    pool_kernel_size=2,
    pool_stride=None,
    ceil_mode: bool = False,
):
    """``max_abs_pool(sharpened_cosine_similarity(x, ...), ...)`` computed pool first.

    The sharpening ``sign(c) · (|c| + eps) ** p`` keeps the sign and grows with
    ``|c|`` for every exponent ``p > 0``, so the element of largest magnitude in
    a window of the output is the element of largest ``|cos|`` there. This
    function pools the cosines (``+a`` winning ties with ``-a``, the gradient
    to the first of equal elements, as :func:`max_abs_pool`) and sharpens only
    the pooled values: a quarter of the elementwise work for 2×2 windows. In
    exact arithmetic the result is the two-step form's. In floating point the
    sharpening can give different cosines values of equal magnitude (every
    ``|c|`` far below ``eps`` gives ``±eps ** p``, since ``|c| + eps`` rounds
    to ``eps``; ``p < 1`` in float32 merges neighbouring values): the
    two-step form then breaks the tie by sign (``+a``) and position, this
    one takes the largest ``|cos|``, so the output has the same magnitude
    but can have the other sign, and the gradient goes to that element. The
    twin of ``scs_torch``'s function of the same name.

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
    """
    kh, kw = _positive_pair("pool_kernel_size", pool_kernel_size)
    sh, sw = (kh, kw) if pool_stride is None else _positive_pair("pool_stride", pool_stride)
    if not isinstance(ceil_mode, bool):
        raise TypeError(f"ceil_mode: expected a bool, got {ceil_mode!r}")
    dot, norm, exponent, scale = _similarity_terms(
        x, kernel, p, q, stride, padding, feature_group_count, eps, precision,
        "sharpened_cosine_similarity_max_abs_pool",
    )
    n, h_out, w_out, groups, per_group = dot.shape
    if h_out < kh or w_out < kw:
        raise ValueError(
            f"pool_kernel_size: expected at most the layer's output size {(h_out, w_out)} "
            f"(input shape {tuple(x.shape)}), got ({kh}, {kw})"
        )
    cos = _cosine(dot, norm).reshape(n, h_out, w_out, groups * per_group)
    pooled = max_abs_pool(cos, (kh, kw), (sh, sw), ceil_mode)
    n, h_pool, w_pool, _ = pooled.shape
    # scale > 0 per channel: pooling dot / norm picks the elements pooling the cosines would.
    one = jnp.ones((n, h_pool, w_pool, groups, 1), pooled.dtype)
    out = _sharpen(pooled.reshape(n, h_pool, w_pool, groups, per_group), one, exponent, scale, eps)
    return out.reshape(n, h_pool, w_pool, groups * per_group)

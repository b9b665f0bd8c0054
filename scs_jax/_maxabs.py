"""MaxAbsPool's two layouts (NHWC): windows that do not overlap, and any windows.

Windows that do not overlap take :func:`max_abs_pool_blocks`, a custom VJP
(``reduce_window`` maxima and minima forward, one elementwise routing pass
backward); overlapping windows are laid out on a last axis
(:func:`max_abs_pool_gather`). ``scs_torch._maxabs`` is the twin.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


def max_abs_pool_gather(
    x: jax.Array, kernel_size: tuple[int, int], stride: tuple[int, int], out_size: tuple[int, int]
) -> jax.Array:
    """MaxAbsPool over any windows: one strided slice per kernel offset stacked on a last axis,
    the first arg-max and arg-min picked there and the chosen element gathered with
    ``take_along_axis`` (``jax.grad`` routes the gradient to that element)."""
    (kh, kw), (sh, sw), (h_out, w_out) = kernel_size, stride, out_size
    n, h, w, c = x.shape
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
def max_abs_pool_blocks(
    x: jax.Array, kernel_size: tuple[int, int], stride: tuple[int, int], out_size: tuple[int, int]
) -> jax.Array:
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


max_abs_pool_blocks.defvjp(_max_abs_pool_blocks_forward, _max_abs_pool_blocks_backward)

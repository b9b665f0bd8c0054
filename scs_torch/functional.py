"""Sharpened Cosine Similarity and MaxAbsPool as pure PyTorch functions (NCHW).

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
then summed over each window (strided slices added, rows then columns).
Nothing is unfolded, so memory stays that of a convolution. The floor ``q``
enters as two factors, ``1 / (‖s‖ + q)`` per patch and ``‖k‖ / (‖k‖ + q)`` per
output channel, so that ``d/dq`` is a sum of one small term per output
element. The division, the product, the power and their derivatives are one
autograd Function with
a hand-written backward (``_Sharpen``; :mod:`scs_torch.compiled` can swap in
``torch.compile``'d kernels), and MaxAbsPool's backward is one scatter to
the element each window chose. :func:`sharpened_cosine_similarity_max_abs_pool`
pools the cosines first and sharpens only the pooled values. ``scs_jax.functional`` holds the
same functions for JAX, NHWC.

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
import numbers

import torch
import torch.nn.functional as F

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
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
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
            ``"same"`` (output size = input size; stride 1 only, as in
            ``torch.nn.Conv2d``, with the extra pixel of an even kernel on the
            bottom/right, torch's rule).
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


def _check_input(x: torch.Tensor, channels: int, what: str) -> None:
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


def _window_sum(x: torch.Tensor, kernel_size, stride, padding) -> torch.Tensor:
    """Sum over every ``kH × kW`` window of ``x`` ``(N, G, H, W)``, zero padding ``(pad_h, pad_w)``.

    Separable: ``kH`` strided row slices added, then ``kW`` column slices of
    that. The window sum of the patch norm used to be ``avg_pool2d`` with
    divisor 1 (a ones-kernel convolution is slower still); on the one-channel
    tensors it sees here (one channel per group) that kernel does not
    vectorise: at (1024, 1, 28, 28), k3, forward + backward took 15 ms
    against 3.5 ms for the slices (eager CPU, 2 threads).
    """
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    if ph or pw:
        x = F.pad(x, (pw, pw, ph, ph))
    h_span = (x.shape[2] - kh) // sh * sh + 1
    w_span = (x.shape[3] - kw) // sw * sw + 1
    rows = x[:, :, 0:h_span:sh]
    for i in range(1, kh):
        rows = rows + x[:, :, i : i + h_span : sh]
    out = rows[:, :, :, 0:w_span:sw]
    for j in range(1, kw):
        out = out + rows[:, :, :, j : j + w_span : sw]
    return out


def _sharpen_forward(dot, norm, exponent, scale, eps: float, needs_grad: bool):
    """:class:`_Sharpen`'s output and what its backward needs (``None`` without ``needs_grad``)."""
    cos = torch.div(dot, norm).mul_(scale)
    base = cos.abs().add_(eps)
    sign = cos.sign()
    # pow, not exp(e · log(base)): the latter's rounding grows with |e · log(base)|
    # (float32: up to 7.6e-6 relative at base ~ 1e-12, against 6e-8 for pow).
    out = torch.pow(base, exponent).mul_(sign)
    if not needs_grad:
        return out, None
    # ∂out/∂dot = e · |out| / base · scale / norm; |out| as out · sign(c): 0 where c = 0.
    slope = torch.mul(out, sign).div_(base).mul_(exponent * scale).div_(norm)
    return out, (dot, out, base.log_(), slope, norm, scale)


def _sharpen_backward(grad, saved, eps: float):
    """:class:`_Sharpen`'s gradients wrt ``dot``, ``norm``, ``exponent`` and ``scale``."""
    dot, out, log_base, slope, norm, scale = saved
    grad_dot = grad * slope
    # ∂out/∂norm = -∂out/∂dot · dot / norm and ∂out/∂scale = ∂out/∂dot · dot / scale:
    # one product, summed over channels and over the batch and positions.
    moment = grad_dot * dot
    grad_norm = moment.sum(2, keepdim=True).div_(norm).neg_()
    grad_scale = moment.sum((0, 3, 4), keepdim=True).div_(scale)
    grad_exponent = (grad * out).mul_(log_base).sum((0, 3, 4), keepdim=True)
    return grad_dot, grad_norm, grad_exponent, grad_scale


class _Sharpen(torch.autograd.Function):
    """``sign(c) · (|c| + eps) ** e`` with ``c = dot / norm · scale``, forward and backward by hand.

    ``dot`` is ``(N, G, C_out // G, H', W')`` (the convolution with unit
    kernels, ``s · k / ‖k‖``), ``norm`` is ``‖s‖ + q``, ``(N, G, 1, H', W')``,
    ``exponent`` and ``scale`` (``‖k‖ / (‖k‖ + q)``) are ``(1, G, C_out // G, 1, 1)``.
    Autograd through the plain expression makes about three times as many
    passes over the largest tensors of the step (the division's backward
    alone is five); here the power is one ``pow`` (accurate to an ulp; an
    ``exp(e · log(|c| + eps))`` loses digits as ``|e · log|`` grows), the
    log is kept for ``∂out/∂e = out · log(|c| + eps)``, the derivative
    ``∂out/∂dot = e · |out| / (|c| + eps) · scale / norm`` (0 at ``c = 0``, torch's
    and JAX's convention through ``sign``) is formed while the forward's
    tensors are at hand, and ``∂out/∂norm``, ``∂out/∂scale`` are
    ``∓∂out/∂dot · dot`` divided by ``norm`` and ``scale``. Not twice
    differentiable: a backward with ``create_graph=True`` raises. The work is
    done by the two functions in ``_KERNELS``.
    """

    @staticmethod
    def forward(ctx, dot, norm, exponent, scale, eps):
        out, saved = _KERNELS[0](dot, norm, exponent, scale, eps, any(ctx.needs_input_grad[:4]))
        if saved is not None:
            ctx.save_for_backward(*saved)
            ctx.eps = eps
        return out

    @staticmethod
    def backward(ctx, grad):
        _refuse_double_backward("sharpened_cosine_similarity")
        grad_dot, grad_norm, grad_exponent, grad_scale = _KERNELS[1](grad, ctx.saved_tensors, ctx.eps)
        return grad_dot, grad_norm if ctx.needs_input_grad[1] else None, grad_exponent, grad_scale, None


#: The forward and backward functions :class:`_Sharpen` runs (eager torch
#: operations by default).
_KERNELS = (_sharpen_forward, _sharpen_backward)


def _refuse_double_backward(what: str) -> None:
    """Raise when a backward runs with ``create_graph=True`` (grad mode on inside backward).

    The hand-written backwards are not differentiable: their saved tensors
    depend on the inputs, so treating the gradient as a constant would give
    silently wrong second derivatives (``torch.autograd.function.once_differentiable``
    only catches the case where the incoming gradient itself requires grad).
    """
    if torch.is_grad_enabled():
        raise RuntimeError(
            f"{what}: second-order gradients (create_graph=True, gradgradcheck, "
            "Hessian-vector products) are not supported by scs_torch; compute them "
            "with scs_jax (its custom VJPs are differentiable) or without create_graph"
        )


def _max_abs_pool_with_indices(x, kernel_size, stride, ceil_mode):
    """MaxAbsPool's output and, per window, the flat ``H·W`` index of the element it returns."""
    largest, at_largest = F.max_pool2d(x, kernel_size, stride, 0, 1, ceil_mode, True)
    smallest_negated, at_smallest = F.max_pool2d(x.neg(), kernel_size, stride, 0, 1, ceil_mode, True)
    keep = largest >= smallest_negated
    return torch.where(keep, largest, smallest_negated.neg_()), torch.where(keep, at_largest, at_smallest)


class _MaxAbsPool(torch.autograd.Function):
    """``max_abs_pool``'s forward with both ``max_pool2d`` calls, and a one-pass backward.

    The element each window returns is the first maximum of ``x`` (``+a``
    wins the tie with ``-a``) or the first maximum of ``-x``, found by
    ``max_pool2d`` exactly as the two-pool expression does; its index is kept
    and the upstream gradient is scattered there once
    (``max_pool2d_with_indices_backward``), instead of two scatters of full
    size, their sum and the negation's backward.
    """

    @staticmethod
    def forward(ctx, x, kernel_size, stride, ceil_mode):
        out, indices = _max_abs_pool_with_indices(x, kernel_size, stride, ceil_mode)
        ctx.save_for_backward(x, indices)
        ctx.pool_args = (kernel_size, stride, ceil_mode)
        return out

    @staticmethod
    def backward(ctx, grad):
        x, indices = ctx.saved_tensors
        kernel_size, stride, ceil_mode = ctx.pool_args
        grad_x = torch.ops.aten.max_pool2d_with_indices_backward(
            grad, x, list(kernel_size), list(stride), [0, 0], [1, 1], ceil_mode, indices
        )
        return grad_x, None, None, None


class _CosineMaxAbsPool(torch.autograd.Function):
    """MaxAbsPool of ``cos = dot / norm``, backward at the pooled resolution where it can be.

    ``dot`` is ``(N, G, C_out // G, H', W')``, ``norm`` ``(N, G, 1, H', W')``;
    returns ``(N, C_out, H_pool, W_pool)``. The forward is ``max_abs_pool``'s
    on the cosines. Only the chosen elements receive a gradient, so the
    backward divides the upstream gradient by the norm gathered at those
    elements (``∂/∂dot = grad / norm``), scatters it once into the full size
    (``max_pool2d_with_indices_backward``), and adds
    ``∂/∂norm = -(grad / norm) · cos`` into the norm's own, ``C_out // G``
    times smaller, tensor (``scatter_add_``): three passes over the full-size
    tensors fewer than a backward through the division.
    """

    @staticmethod
    def forward(ctx, dot, norm, kernel_size, stride, ceil_mode):
        cos = (dot / norm).flatten(1, 2)
        pooled, indices = _max_abs_pool_with_indices(cos, kernel_size, stride, ceil_mode)
        ctx.save_for_backward(cos, norm, pooled, indices)
        ctx.pool_args = (kernel_size, stride, ceil_mode)
        return pooled

    @staticmethod
    def backward(ctx, grad):
        _refuse_double_backward("sharpened_cosine_similarity_max_abs_pool")
        cos, norm, pooled, indices = ctx.saved_tensors
        kernel_size, stride, ceil_mode = ctx.pool_args
        n, groups, _, h, w = norm.shape
        channels = cos.shape[1]
        # Pooled tensors are flattened in their memory order (NHWC when channels-last), so
        # that neither the flattening nor the way back copies.
        order = (0, 2, 3, 1) if indices.is_contiguous(memory_format=torch.channels_last) else (0, 1, 2, 3)
        permuted = tuple(grad.shape[d] for d in order)
        back = tuple(order.index(d) for d in range(4))

        def flat(t):
            return t.permute(order).reshape(n, -1)

        def unflat(t):
            return t.view(permuted).permute(back)

        # Each chosen element's index into the norm's (G·H'·W') entries of its sample.
        group_start = torch.arange(groups, device=indices.device).repeat_interleave(channels // groups) * (h * w)
        at = flat(indices + group_start.view(1, channels, 1, 1))
        norm_flat = norm.reshape(n, groups * h * w)
        grad_cos = grad / unflat(torch.gather(norm_flat, 1, at))
        grad_dot = torch.ops.aten.max_pool2d_with_indices_backward(
            grad_cos, cos, list(kernel_size), list(stride), [0, 0], [1, 1], ceil_mode, indices
        )
        grad_norm = None
        if ctx.needs_input_grad[1]:
            grad_norm = torch.zeros_like(norm_flat).scatter_add_(1, at, flat((grad_cos * pooled).neg_()))
            grad_norm = grad_norm.view(n, groups, 1, h, w)
        return grad_dot.unflatten(1, (groups, channels // groups)), grad_norm, None, None, None


def _similarity_terms(x, weight, p, q, stride, padding, groups: int, eps: float, what: str):
    """Checks the arguments; returns ``s·k / ‖k‖`` ``(N, G, C_out // G, H', W')``,
    ``‖s‖ + q`` ``(N, G, 1, H', W')``, the exponent and ``‖k‖ / (‖k‖ + q)``,
    both ``(1, G, C_out // G, 1, 1)``: ``cos = s·k/‖k‖ / (‖s‖ + q) · ‖k‖/(‖k‖ + q)``.

    The kernel's floor is a factor on the cosine rather than part of the
    convolution's kernels so that ``d/dq`` is a sum of one small term per
    output element. Through the convolution it was a contraction of the
    kernel gradient (summed over the batch first) with the kernels, whose
    terms cancel where cosines are near 0 (measured float32 error of d/dq up
    to 3e-4 in JAX, 1.4e-4 in torch, over the property tests' draws).
    """
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"groups: expected a positive int, got {groups!r}")
    if weight.dim() != 4:
        raise ValueError(
            f"weight: expected a 4-D tensor (C_out, C_in // groups, kH, kW), got shape {tuple(weight.shape)}"
        )
    out_channels, group_in, kh, kw = weight.shape
    if tuple(p.shape) != (out_channels,):
        raise ValueError(f"p: expected shape ({out_channels},) (one per output channel), got {tuple(p.shape)}")
    if q.numel() != 1:
        raise ValueError(f"q: expected one value (shape (1,)), got shape {tuple(q.shape)}")
    eps = _check_eps(eps)
    if out_channels % groups:
        raise ValueError(
            f"groups: out_channels ({out_channels}) must be divisible by groups, got groups={groups}"
        )
    _check_input(x, group_in * groups, what)
    if x.dtype != weight.dtype:
        raise TypeError(f"x: expected dtype {weight.dtype} (the weight's), got {x.dtype}")
    sh, sw = _positive_pair("stride", stride)
    (pt, pb), (pl, pr) = resolve_padding(padding, (kh, kw), (sh, sw))
    n, c, h, w = x.shape
    if h + pt + pb < kh or w + pl + pr < kw:
        raise ValueError(
            f"x: padded spatial size ({h + pt + pb}, {w + pl + pr}) is smaller than "
            f"kernel_size ({kh}, {kw}); got input shape {tuple(x.shape)}"
        )

    if pt == pb and pl == pr:
        conv_padding = (pt, pl)
    else:
        x = F.pad(x, (pl, pr, pt, pb))
        conv_padding = (0, 0)

    q_value = (q / Q_SCALE).square()
    kernel_length = (weight.square().sum((1, 2, 3)) + eps).sqrt()  # ‖k‖, (C_out,)
    # s · k / ‖k‖ as one convolution with unit kernels (small tensors).
    dot = F.conv2d(x, weight / kernel_length.reshape(-1, 1, 1, 1), None, (sh, sw), conv_padding, 1, groups)
    # ‖s‖²: squares summed over each group's channels, then over each window.
    square_sum = x.square().unflatten(1, (groups, c // groups)).sum(2)
    patch_square = _window_sum(square_sum, (kh, kw), (sh, sw), conv_padding)
    patch_norm = (patch_square + eps).sqrt() + q_value  # (N, G, H', W')

    per_group = out_channels // groups
    exponent = (p / P_SCALE).square().reshape(1, groups, per_group, 1, 1)
    # ‖k‖ / (‖k‖ + q) as 1 / (1 + q / ‖k‖): 1, not inf / inf, where ‖k‖ overflows.
    scale = (q_value / kernel_length).add_(1.0).reciprocal_().reshape(1, groups, per_group, 1, 1)
    return dot.unflatten(1, (groups, per_group)), patch_norm.unsqueeze(2), exponent, scale


def sharpened_cosine_similarity(
    x: torch.Tensor,
    weight: torch.Tensor,
    p: torch.Tensor,
    q: torch.Tensor,
    stride=1,
    padding=0,
    groups: int = 1,
    eps: float = EPS,
) -> torch.Tensor:
    """Sharpened cosine similarity of every patch of ``x`` with every kernel.

    Args:
        x: input, ``(N, C_in, H, W)``, floating point, same dtype/device as ``weight``.
        weight: kernels, ``(C_out, C_in // groups, kH, kW)`` (``torch.nn.Conv2d``'s layout).
        p: stored exponent parameter, ``(C_out,)``; the exponent is ``(p / 10)²``.
        q: stored floor parameter, ``(1,)``; the floor is ``(q / 100)²``.
        stride: int or pair.
        padding: int, pair, pair of pairs, ``"valid"`` or ``"same"`` (see
            :func:`resolve_padding`); zero padding, which takes part in the
            patch norms.
        groups: channel groups as in ``torch.nn.Conv2d``; a patch's norm spans
            exactly the channels its kernel sees (``groups=C_in`` is depthwise).
        eps: added under the square roots of the norms and to ``|cos|`` before
            the power, so that zero patches, zero kernels and ``cos = 0`` give
            finite values and gradients.

    Returns:
        ``(N, C_out, H_out, W_out)``, the dtype of ``x``, values in ``[-1, 1]``
        up to ``eps``.

    Raises:
        TypeError, ValueError: for a wrong rank, channel count, dtype, an
        empty batch, an input smaller than the kernel, or impossible groups;
        the message names the argument, the expected and the received value.

    The maths is the module docstring's; source: brohrer/sharpened_cosine_similarity_torch.
    """
    dot, norm, exponent, scale = _similarity_terms(
        x, weight, p, q, stride, padding, groups, eps, "sharpened_cosine_similarity"
    )
    return _Sharpen.apply(dot, norm, exponent, scale, eps).flatten(1, 2)


def max_abs_pool(
    x: torch.Tensor, kernel_size=2, stride=None, ceil_mode: bool = False
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
            starts inside the input (``torch.nn.MaxPool2d``'s rule).

    Returns:
        ``(N, C, H_out, W_out)``, the dtype of ``x``. NaNs propagate.

    Raises:
        TypeError, ValueError: naming the argument, the expected and received value.

    Source: the ``MaxAbsPool2d`` of brohrer/sharpened_cosine_similarity_torch.
    """
    kh, kw = _positive_pair("kernel_size", kernel_size)
    sh, sw = (kh, kw) if stride is None else _positive_pair("stride", stride)
    if not isinstance(ceil_mode, bool):
        raise TypeError(f"ceil_mode: expected a bool, got {ceil_mode!r}")
    _check_input(x, None, "max_abs_pool")
    pool_output_size(x.shape[2], kh, sh, ceil_mode)
    pool_output_size(x.shape[3], kw, sw, ceil_mode)
    if torch.is_grad_enabled() and x.requires_grad:
        return _MaxAbsPool.apply(x, (kh, kw), (sh, sw), ceil_mode)
    largest = F.max_pool2d(x, (kh, kw), (sh, sw), 0, 1, ceil_mode)
    smallest_negated = F.max_pool2d(x.neg(), (kh, kw), (sh, sw), 0, 1, ceil_mode)
    return torch.where(largest >= smallest_negated, largest, smallest_negated.neg_())


def sharpened_cosine_similarity_max_abs_pool(
    x: torch.Tensor,
    weight: torch.Tensor,
    p: torch.Tensor,
    q: torch.Tensor,
    stride=1,
    padding=0,
    groups: int = 1,
    eps: float = EPS,
    *,
    pool_kernel_size=2,
    pool_stride=None,
    ceil_mode: bool = False,
) -> torch.Tensor:
    """``max_abs_pool(sharpened_cosine_similarity(x, ...), ...)`` computed pool first.

    The sharpening ``sign(c) · (|c| + eps) ** p`` keeps the sign and grows with
    ``|c|`` for every exponent ``p > 0``, so the element of largest magnitude in
    a window of the output is the element of largest ``|cos|`` there. This
    function pools the cosines (``+a`` winning ties with ``-a``, the gradient
    to the first of equal elements, as :func:`max_abs_pool`) and sharpens only
    the pooled values: a quarter of the elementwise work for 2×2 windows, and
    the training step of the demo network about 1.5x faster on CPU. In exact
    arithmetic the result is the two-step form's. In floating point the
    sharpening can give different cosines values of equal magnitude (every
    ``|c|`` far below ``eps`` gives ``±eps ** p``, since ``|c| + eps`` rounds
    to ``eps``; ``p < 1`` in float32 merges neighbouring values): the
    two-step form then breaks the tie by sign (``+a``) and position, this
    one takes the largest ``|cos|``, so the output has the same magnitude
    but can have the other sign, and the gradient goes to that element.

    Args:
        x, weight, p, q, stride, padding, groups, eps: as
            :func:`sharpened_cosine_similarity`.
        pool_kernel_size, pool_stride, ceil_mode: as ``kernel_size``,
            ``stride`` and ``ceil_mode`` of :func:`max_abs_pool`.

    Returns:
        ``(N, C_out, H_pool, W_pool)``, the dtype of ``x``.

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
        x, weight, p, q, stride, padding, groups, eps, "sharpened_cosine_similarity_max_abs_pool"
    )
    if dot.shape[3] < kh or dot.shape[4] < kw:
        raise ValueError(
            f"pool_kernel_size: expected at most the layer's output size {tuple(dot.shape[3:])} "
            f"(input shape {tuple(x.shape)}), got ({kh}, {kw})"
        )
    if torch.is_grad_enabled() and (dot.requires_grad or norm.requires_grad):
        pooled = _CosineMaxAbsPool.apply(dot, norm, (kh, kw), (sh, sw), ceil_mode)
    else:
        pooled = max_abs_pool((dot / norm).flatten(1, 2), (kh, kw), (sh, sw), ceil_mode)
    # scale > 0 per channel: pooling dot / norm picks the elements pooling the cosines would.
    one = pooled.new_ones(())
    return _Sharpen.apply(pooled.unflatten(1, exponent.shape[1:3]), one, exponent, scale, eps).flatten(1, 2)

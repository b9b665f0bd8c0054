"""The sharpening ``sign(c) · (|c| + eps) ** e`` as an autograd Function with a hand-written backward.

:mod:`scs_torch.compiled` swaps the two functions the Function runs
(:func:`use_kernels`); ``scs_jax._sharpen`` is the twin, a ``jax.custom_vjp``.
"""

from __future__ import annotations

from typing import Callable

import torch


def sharpen_forward(dot, norm, exponent, scale, eps: float, needs_grad: bool):
    """:class:`Sharpen`'s output and the tensors its backward needs besides the inputs and
    the output (``None`` without ``needs_grad``)."""
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
    return out, (base.log_(), slope)


def sharpen_backward(grad, saved, eps: float):
    """:class:`Sharpen`'s gradients wrt ``dot``, ``norm``, ``exponent`` and ``scale``.

    ``saved``: ``(dot, norm, exponent, scale, out)`` and what :func:`sharpen_forward` returned
    besides ``out``.
    """
    dot, norm, _, scale, out, log_base, slope = saved
    grad_dot = grad * slope
    # ∂out/∂norm = -∂out/∂dot · dot / norm and ∂out/∂scale = ∂out/∂dot · dot / scale:
    # one product, summed over channels and over the batch and positions.
    moment = grad_dot * dot
    grad_norm = moment.sum(2, keepdim=True).div_(norm).neg_()
    grad_scale = moment.sum((0, 3, 4), keepdim=True).div_(scale)
    grad_exponent = (grad * out).mul_(log_base).sum((0, 3, 4), keepdim=True)
    return grad_dot, grad_norm, grad_exponent, grad_scale


#: The forward and backward functions :class:`Sharpen` runs by default (eager torch operations).
EAGER_KERNELS: tuple[Callable, Callable] = (sharpen_forward, sharpen_backward)
_kernels = EAGER_KERNELS


def use_kernels(kernels: tuple[Callable, Callable]) -> None:
    """Make :class:`Sharpen` run ``kernels`` (forward, backward) from now on, process-wide."""
    global _kernels
    _kernels = kernels


def kernels() -> tuple[Callable, Callable]:
    """The forward and backward functions :class:`Sharpen` runs now."""
    return _kernels


def _functorch_grad_levels() -> int:
    """How many ``torch.func`` differentiation transforms (``grad``, ``vjp``, ``jvp``, ...) are active."""
    try:  # private, present since torch 2.0; without it plain autograd's rule applies
        from torch._C._functorch import TransformType
        from torch._functorch.pyfunctorch import retrieve_all_functorch_interpreters
    except ImportError:  # pragma: no cover - other torch versions
        return 0
    kinds = (TransformType.Grad, TransformType.Jvp)
    return sum(interpreter.key() in kinds for interpreter in retrieve_all_functorch_interpreters())


def refuse_double_backward(what: str) -> None:
    """Raise when a backward runs to be differentiated again (``create_graph=True``, nested ``torch.func.grad``).

    The hand-written backwards are not differentiable: their saved tensors
    depend on the inputs, so treating the gradient as a constant would give
    silently wrong second derivatives (``torch.autograd.function.once_differentiable``
    only catches the case where the incoming gradient itself requires grad).
    Plain autograd runs a backward with grad mode on only for ``create_graph=True``;
    ``torch.func.grad`` always does, so one level of it is a first-order gradient
    (parallel runs: ``vmap`` of ``grad``) and two levels are not.
    """
    if torch.is_grad_enabled() and _functorch_grad_levels() != 1:
        raise RuntimeError(
            f"{what}: second-order gradients (create_graph=True, gradgradcheck, "
            "Hessian-vector products, nested torch.func.grad) are not supported by scs_torch; "
            "compute them with scs_jax (its custom VJPs are differentiable) or without create_graph"
        )


class Sharpen(torch.autograd.Function):
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
    done by the two functions of :func:`kernels`.

    Written for ``torch.func`` (``forward`` without ``ctx``, ``setup_context``):
    ``apply`` returns the output followed by the intermediates the backward
    needs (non-differentiable), and ``generate_vmap_rule`` lets ``torch.func.vmap``
    run it over a leading batch of parameters and inputs (parallel runs).
    Call it through :func:`sharpen`, which skips it when no gradient is needed.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(dot, norm, exponent, scale, eps):
        out, extras = _kernels[0](dot, norm, exponent, scale, eps, True)
        return (out, *extras)

    @staticmethod
    def setup_context(ctx, inputs, output):
        dot, norm, exponent, scale, eps = inputs
        ctx.mark_non_differentiable(*output[1:])
        ctx.save_for_backward(dot, norm, exponent, scale, *output)
        ctx.eps = eps

    @staticmethod
    def backward(ctx, grad, *unused):
        refuse_double_backward("sharpened_cosine_similarity")
        grad_dot, grad_norm, grad_exponent, grad_scale = _kernels[1](grad, ctx.saved_tensors, ctx.eps)
        return grad_dot, grad_norm if ctx.needs_input_grad[1] else None, grad_exponent, grad_scale, None


def sharpen(dot, norm, exponent, scale, eps: float):
    """:class:`Sharpen`'s output; without a gradient to compute, the forward kernel alone.

    Shapes as :class:`Sharpen`'s; the result has ``dot``'s shape and dtype.
    """
    if torch.is_grad_enabled() and any(t.requires_grad for t in (dot, norm, exponent, scale)):
        return Sharpen.apply(dot, norm, exponent, scale, eps)[0]
    return _kernels[0](dot, norm, exponent, scale, eps, False)[0]

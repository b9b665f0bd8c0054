"""Opt-in fused kernels for the SCS layer's elementwise work, built with ``torch.compile``.

Eager PyTorch makes one pass over memory per operation: the sharpening step
of :func:`scs_torch.functional.sharpened_cosine_similarity` (the division by
the patch norm, ``|c| + eps``, the power, the sign and, for training, the
derivatives) is about a dozen passes over the largest tensors of the network.
:func:`enable` replaces the two functions that step runs (``scs_torch._sharpen``'s
kernels), process-wide, with
``torch.compile``'d versions of the same expressions, which TorchInductor
fuses into a few vectorised C++ loops (measured on the Fashion-MNIST network,
one CPU thread: the whole training step about 1.5x faster). The maths is the
same; the results differ from eager ones by float rounding only (pow/log
implementations and summation order), far inside the parity tolerances.

Costs: TorchInductor needs a C++ compiler on the machine (``g++``/``clang``)
and compiles on the first call of each function (tens of seconds on a
2-core machine, then cached in the process and on disk); shapes are compiled
dynamic, so batch sizes and layers share the kernels. Convolutions and
pooling stay eager. Nothing changes until :func:`enable` is called.
"""

from __future__ import annotations

import torch

from . import _sharpen

__all__ = ["enable", "disable", "enabled"]

_COMPILED = None


def _sharpen_forward(dot, norm, exponent, scale, eps: float, needs_grad: bool):
    cos = dot / norm * scale
    out = torch.sign(cos) * torch.pow(cos.abs() + eps, exponent)
    if not needs_grad:
        return out, None
    # Fused code recomputes cheaply: the backward gets only the inputs and the output.
    return out, ()


def _sharpen_backward(grad, saved, eps: float):
    dot, norm, exponent, scale, out = saved
    cos = dot / norm * scale
    base = cos.abs() + eps
    # |out| as out · sign(c): 0 where c = 0, like the output itself.
    grad_dot = grad * (exponent * scale * (out * torch.sign(cos)) / (base * norm))
    moment = grad_dot * dot
    grad_norm = -moment.sum(2, keepdim=True) / norm
    grad_scale = moment.sum((0, 3, 4), keepdim=True) / scale
    grad_exponent = (grad * out * torch.log(base)).sum((0, 3, 4), keepdim=True)
    return grad_dot, grad_norm, grad_exponent, grad_scale


def enable() -> None:
    """Run every SCS layer of this process with the fused kernels (compiled on first use).

    Raises:
        RuntimeError: when ``torch.compile`` is unavailable (e.g. an unsupported
            Python version); a missing C++ compiler surfaces at the first call.

    Examples:
        >>> from scs_torch import compiled
        >>> compiled.enable()  # nothing is compiled before an SCS layer runs
        >>> compiled.enabled()
        True
        >>> compiled.disable()
        >>> compiled.enabled()
        False
    """
    global _COMPILED
    if not hasattr(torch, "compile"):
        raise RuntimeError("scs_torch.compiled.enable: this torch has no torch.compile")
    if _COMPILED is None:
        _COMPILED = (
            torch.compile(_sharpen_forward, dynamic=True),
            torch.compile(_sharpen_backward, dynamic=True),
        )
    _sharpen.use_kernels(_COMPILED)


def disable() -> None:
    """Back to the eager kernels (the default).

    Examples:
        >>> from scs_torch import compiled
        >>> compiled.disable()
        >>> compiled.enabled()
        False
    """
    _sharpen.use_kernels(_sharpen.EAGER_KERNELS)


def enabled() -> bool:
    """Whether the fused kernels are in use.

    Examples:
        >>> from scs_torch import compiled
        >>> compiled.enabled()  # off until enable() is called
        False
    """
    return _sharpen.kernels() is not _sharpen.EAGER_KERNELS

"""The sharpening ``sign(c) · (|c| + eps) ** e`` as a ``jax.custom_vjp`` with a hand-written backward.

``scs_torch._sharpen`` is the twin, an autograd Function.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from ._reductions import sum_leading, sum_minor


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def sharpen(dot: jax.Array, norm: jax.Array, exponent: jax.Array, scale: jax.Array, eps: float) -> jax.Array:
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
    ``jnp.power``'s derivative, the twin of ``scs_torch``'s ``Sharpen``.
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
    grad_norm = -sum_minor(moment) / norm
    grad_scale = sum_leading(moment, 2) / scale
    grad_exponent = sum_leading(grad * out * jnp.log(base), 2)
    return grad_dot, grad_norm, grad_exponent, grad_scale


sharpen.defvjp(_sharpen_forward, _sharpen_backward)

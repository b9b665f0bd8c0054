"""Second-order gradients: refused by scs_torch, correct in scs_jax.

The torch layer's hand-written backwards are not differentiable. Before,
``create_graph=True`` returned silently wrong second derivatives (the
backward's saved tensors were treated as constants); now it raises. JAX's
custom VJPs are written in differentiable JAX operations, so ``jax.grad`` of
a gradient works: checked here against the same maths written with plain
``jnp`` operations and autodiff alone.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from jax import lax

import scs_jax
import scs_torch
from scs_jax import functional as SF


def _torch_layer():
    torch.manual_seed(0)
    return scs_torch.SharpenedCosineSimilarity2d(2, 3, 3, padding=1).double()


@pytest.mark.parametrize("fused", [False, True], ids=["two_step", "fused"])
def test_torch_first_order_is_checked_and_second_order_raises(fused):
    layer = _torch_layer()
    pool = scs_torch.MaxAbsPool2d(2, 2, ceil_mode=True)

    def f(x):
        return layer(x, pool=pool) if fused else layer(x)

    x = torch.rand(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(f, (x,))
    with pytest.raises(RuntimeError, match="second-order gradients"):
        torch.autograd.gradgradcheck(f, (x,))
    # a scalar loss whose first gradient is taken with create_graph (a gradient penalty)
    (grad,) = torch.autograd.grad(f(x).square().sum(), x, create_graph=False)
    assert torch.isfinite(grad).all()
    with pytest.raises(RuntimeError, match="second-order gradients"):
        torch.autograd.grad(f(x).square().sum(), x, create_graph=True)


def _plain_scs(x, kernel, p, q, padding, eps=SF.EPS):
    """The SCS equation with plain jnp operations (autodiff throughout), NHWC."""
    q_value = jnp.square(q / SF.Q_SCALE)
    pads = [(padding, padding)] * 2
    dot = lax.conv_general_dilated(x, kernel, (1, 1), pads, dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                   precision=lax.Precision.HIGHEST)
    ones = jnp.ones(kernel.shape[:3] + (1,), x.dtype)
    patch = lax.conv_general_dilated(jnp.square(x), ones, (1, 1), pads,
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                     precision=lax.Precision.HIGHEST)
    cos = dot / ((jnp.sqrt(patch + eps) + q_value) * (jnp.sqrt(jnp.square(kernel).sum((0, 1, 2)) + eps) + q_value))
    return jnp.sign(cos) * jnp.power(jnp.abs(cos) + eps, jnp.square(p / SF.P_SCALE))


@pytest.mark.parametrize("fused", [False, True], ids=["two_step", "fused"])
def test_jax_second_order_matches_plain_autodiff(fused):
    with jax.enable_x64(True):
        layer = scs_jax.SharpenedCosineSimilarity(2, 3, 3, padding=1, param_dtype=jnp.float64, rngs=nnx.Rngs(0))
        layer.p[...] = jnp.array([12.0, 15.0, 18.0])
        pool = scs_jax.MaxAbsPool(2, 2, ceil_mode=True)
        rng = np.random.default_rng(0)
        x = jnp.asarray(rng.standard_normal((1, 5, 5, 2)))
        v = jnp.asarray(rng.standard_normal(x.shape))
        kernel, p, q = layer.kernel[...], layer.p[...], layer.q[...]

        def ours(x):
            return layer(x, pool=pool) if fused else layer(x)

        def plain(x):
            out = _plain_scs(x, kernel, p, q, 1)
            return pool(out) if fused else out

        def hvp(f):
            # d/dx of <d/dx sum(f(x)^2), v>: a Hessian-vector product
            grad = jax.grad(lambda x: jnp.sum(jnp.square(f(x))))
            return jax.grad(lambda x: jnp.vdot(grad(x), v))(x)

        expected, actual = hvp(plain), hvp(ours)
        assert float(jnp.max(jnp.abs(expected))) > 0
        np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=1e-9,
                                   atol=1e-12 * float(jnp.max(jnp.abs(expected))))

"""Layers moved to another dtype or device keep working: nothing in a forward pass uses defaults.

Issue 4: nothing inside ``forward``/``__call__`` may create a tensor on a
default device or dtype. Checked on the torch side by moving layers to
float64 and to the ``meta`` device (and CUDA where a GPU is present), and by
changing torch's default dtype and device around a forward pass, which
would expose any ``torch.tensor``/``torch.ones`` without ``dtype``/``device``;
on the JAX side by casting a layer's state to float64.
"""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import scs_jax
import scs_torch

POOL = (2, 2, True)


def _torch_layer(dtype=torch.float32, device=None, groups=2):
    torch.manual_seed(0)
    layer = scs_torch.SharpenedCosineSimilarity2d(4, 6, 3, stride=1, padding=1, groups=groups,
                                                  dtype=dtype, device=device)
    with torch.no_grad():
        layer.p.uniform_(5.0, 20.0)
        layer.q.fill_(12.0)
    return layer


def _torch_results(layer, x, fused):
    """Output and gradients (x, weight, p, q) of ``sum(out * arange)``."""
    x = x.clone().requires_grad_(True)
    pool = scs_torch.MaxAbsPool2d(*POOL)
    out = layer(x, pool=pool) if fused else pool(layer(x))
    weights = torch.arange(out.numel(), dtype=out.dtype, device=out.device).reshape(out.shape)
    grads = torch.autograd.grad((out * weights).sum(), [x, layer.weight, layer.p, layer.q])
    return [out, *grads]


@pytest.mark.parametrize("fused", [False, True], ids=["two_step", "fused"])
def test_torch_layer_moved_to_float64_equals_one_built_in_float64(fused):
    moved = _torch_layer(torch.float32).to(torch.float64)
    built = _torch_layer(torch.float64)
    with torch.no_grad():
        for name, param in built.named_parameters():
            param.copy_(getattr(moved, name))
    x = torch.randn(2, 4, 7, 7, dtype=torch.float64)
    for a, b in zip(_torch_results(moved, x, fused), _torch_results(built, x, fused)):
        assert a.dtype == torch.float64
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("fused", [False, True], ids=["two_step", "fused"])
def test_torch_layer_on_the_meta_device(fused):
    for layer in (_torch_layer().to("meta"), _torch_layer(device="meta"), _torch_layer(torch.float64).to("meta")):
        x = torch.empty(2, 4, 7, 7, device="meta", dtype=layer.weight.dtype)
        out, *grads = _torch_results(layer, x, fused)
        assert out.device.type == "meta" and out.dtype == layer.weight.dtype
        assert out.shape == (2, 6, 4, 4)
        for grad, like in zip(grads, [x, layer.weight, layer.p, layer.q]):
            assert grad.device.type == "meta" and grad.shape == like.shape and grad.dtype == like.dtype


@contextlib.contextmanager
def _torch_defaults(dtype=None, device=None):
    old_dtype = torch.get_default_dtype()
    try:
        if dtype is not None:
            torch.set_default_dtype(dtype)
        if device is not None:
            torch.set_default_device(device)
        yield
    finally:
        torch.set_default_dtype(old_dtype)
        if device is not None:
            torch.set_default_device(None)


@pytest.mark.parametrize("fused", [False, True], ids=["two_step", "fused"])
def test_torch_forward_ignores_the_default_dtype_and_device(fused):
    layer = _torch_layer(torch.float32)
    x = torch.randn(2, 4, 7, 7)
    expected = _torch_results(layer, x, fused)
    for defaults in ({"dtype": torch.float64}, {"device": "meta"}, {"dtype": torch.float64, "device": "meta"}):
        with _torch_defaults(**defaults):
            got = _torch_results(layer, x, fused)
        for a, b in zip(got, expected):
            assert a.dtype == torch.float32 and a.device.type == "cpu", defaults
            torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("fused", [False, True], ids=["two_step", "fused"])
def test_torch_layer_moved_to_cuda_matches_cpu(fused):
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    layer = _torch_layer(torch.float64)
    x = torch.randn(2, 4, 7, 7, dtype=torch.float64)
    on_cpu = _torch_results(layer, x, fused)
    on_gpu = _torch_results(layer.to("cuda"), x.to("cuda"), fused)
    for a, b in zip(on_gpu, on_cpu):
        assert a.device.type == "cuda"
        torch.testing.assert_close(a.cpu(), b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("fused", [False, True], ids=["two_step", "fused"])
def test_jax_layer_cast_to_float64_equals_one_built_in_float64(fused):
    with jax.enable_x64(True):
        built = scs_jax.SharpenedCosineSimilarity(4, 6, 3, padding=1, feature_group_count=2,
                                                  param_dtype=jnp.float64, rngs=nnx.Rngs(0))
        cast = scs_jax.SharpenedCosineSimilarity(4, 6, 3, padding=1, feature_group_count=2, rngs=nnx.Rngs(0))
        graphdef, state = nnx.split(cast)
        assert jax.tree.leaves(state)[0].dtype == jnp.float32
        cast = nnx.merge(graphdef, jax.tree.map(lambda v: v.astype(jnp.float64), state))
        nnx.update(built, nnx.state(cast))
        x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 7, 7, 4)))
        pool = scs_jax.MaxAbsPool(*POOL)

        def results(layer):
            def loss(layer, x):
                out = layer(x, pool=pool) if fused else pool(layer(x))
                return (out * jnp.arange(out.size).reshape(out.shape)).sum(), out

            (_, out), grads = nnx.value_and_grad(loss, argnums=(0, 1), has_aux=True)(layer, x)
            return [out, *jax.tree.leaves(grads)]

        for a, b in zip(results(cast), results(built)):
            assert a.dtype == jnp.float64
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

"""The demo networks built in both frameworks: logits, loss and every parameter's gradient.

torch draws the weights (p and q moved off their initial values), then
``demos.transfer.torch_to_jax`` copies them into the JAX build.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
import torch.nn.functional as F
from helpers.parity import (
    DTYPES,
    P_PARAM_RANGE,
    Q_PARAM_RANGE,
    TOLERANCES,
    TORCH_DTYPES,
    assert_close,
    check_float32,
    jax_precision,
    kernel_to_weight,
)
from flax import nnx

from demos.architectures import CIFAR10, FASHION_MNIST
from demos.build_jax import build_jax_model
from demos.build_torch import build_torch_model
from demos.transfer import torch_to_jax
from scs_torch import MaxAbsPool2d, SharpenedCosineSimilarity2d

BATCH = 6


@functools.partial(jax.jit, static_argnums=0)
def _jax_loss_and_grads(graphdef, state, images, labels):
    def loss_fn(state):
        logits = nnx.merge(graphdef, state)(images)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), logits

    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state)
    return loss, logits, grads


def build_pair(architecture, dtype, rng, with_jax=True):
    """torch model with perturbed p/q, and the JAX model with its weights (call inside jax_precision)."""
    torch.manual_seed(int(rng.integers(2**31)))
    torch_model = build_torch_model(architecture, dtype=TORCH_DTYPES[dtype])
    with torch.no_grad():
        for layer in torch_model:
            if isinstance(layer, SharpenedCosineSimilarity2d):
                layer.p.copy_(torch.from_numpy(rng.uniform(*P_PARAM_RANGE, layer.p.shape)))
                layer.q.copy_(torch.from_numpy(rng.uniform(*Q_PARAM_RANGE, 1)))
    if not with_jax:
        return torch_model, None
    return torch_model, torch_to_jax(torch_model, _jax_model(architecture.name, dtype))


@functools.cache
def _jax_model(name, dtype):
    """One JAX build per architecture and dtype (its eager initialisation costs seconds of
    XLA compiles); every test overwrites all of its parameters from torch."""
    architecture = {a.name: a for a in (FASHION_MNIST, CIFAR10)}[name]
    return build_jax_model(architecture, rngs=nnx.Rngs(0), param_dtype=jnp.dtype(dtype))


def torch_loss_and_grads(model, images, labels):
    logits = model(torch.from_numpy(images).to(next(model.parameters()).dtype))
    loss = F.cross_entropy(logits, torch.from_numpy(labels))
    names, params = zip(*model.named_parameters())
    grads = torch.autograd.grad(loss, params)
    return loss.item(), logits.detach().numpy(), {n: g.numpy() for n, g in zip(names, grads)}


def jax_loss_and_grads(model, images, labels, dtype):
    graphdef, state = nnx.split(model)
    loss, logits, grads = _jax_loss_and_grads(
        graphdef, state, jnp.asarray(images.transpose(0, 2, 3, 1), dtype), jnp.asarray(labels)
    )
    assert logits.dtype == jnp.dtype(dtype) and loss.dtype == jnp.dtype(dtype)
    # torch names ("<index>.weight") and layouts, transposed here rather than
    # through the converters under test.
    named = {}
    for index, layer in nnx.to_pure_dict(grads)["layers"].items():
        for name, value in layer.items():
            value = np.asarray(value)
            if name == "kernel":
                name, value = "weight", (kernel_to_weight(value) if value.ndim == 4 else value.T)
            named[f"{index}.{name}"] = value
    return float(loss), np.asarray(logits), named


def check_network(architecture, dtype, images, labels, rng, label):
    tol = TOLERANCES[dtype]
    with jax_precision(dtype):
        torch_model, jax_model = build_pair(architecture, dtype, rng)
        loss_t, logits_t, grads_t = torch_loss_and_grads(torch_model, images, labels)
        loss_j, logits_j, grads_j = jax_loss_and_grads(jax_model, images, labels, dtype)
    assert sorted(grads_j) == sorted(grads_t), "the two builds name different parameters"
    quantities = [("logits", logits_j, logits_t, "output"), ("loss", loss_j, loss_t, "output")]
    quantities += [(f"d/d[{name}]", grads_j[name], grads_t[name], "grad") for name in grads_t]

    @functools.cache
    def truth():
        """The float64 run of the same torch network on the same (float32) numbers."""
        model = build_torch_model(architecture, dtype=torch.float64)
        model.load_state_dict({k: v.double() for k, v in torch_model.state_dict().items()})
        loss, logits, grads = torch_loss_and_grads(model, np.float32(images).astype(np.float64), labels)
        return {"logits": logits, "loss": loss, **{f"d/d[{n}]": g for n, g in grads.items()}}

    for name, actual, expected, kind in quantities:
        if dtype == "float32":
            check_float32(actual, expected, tol[kind], f"{label} {name}", lambda: truth()[name], kind=kind)
        else:
            assert_close(actual, expected, tol[kind], f"{label} {name}", kind=kind, dtype=dtype)
    return loss_t, grads_t


def random_batch(architecture, rng):
    images = rng.random((BATCH, *architecture.input_shape))
    labels = rng.integers(0, architecture.num_classes, BATCH)
    return images, labels


#: How many times the float32 rounding error must fit into a pooling window's
#: margin (see :func:`pooling_is_stable`).
POOL_MARGIN = 10.0


def pooling_is_stable(torch_model, images):
    """Whether every MaxAbsPool choice survives float32 rounding, with a margin.

    MaxAbsPool picks one element per window, a discontinuous choice: where
    the two largest magnitudes differ by less than the frameworks' rounding
    differences, torch and JAX may legitimately pick different elements and
    route the gradient elsewhere (measured: a gap of 1.8e-7 relative in
    CIFAR-10's first pool flipped between processes and moved
    d/d[0.weight] by 7e-3). For each window the gap |x|₁ - |x|₂ of the
    float64 forward must exceed ``POOL_MARGIN`` times the float32 forward's
    actual error on those two elements (at least one float32 ulp each).
    Exact ties are tested in test_pool_parity. Runs torch only.
    """
    model = build_torch_model(CIFAR10 if images.shape[1] == 3 else FASHION_MNIST, dtype=torch.float64)
    model.load_state_dict({k: v.double() for k, v in torch_model.state_dict().items()})
    model32 = build_torch_model(CIFAR10 if images.shape[1] == 3 else FASHION_MNIST, dtype=torch.float32)
    model32.load_state_dict({k: v.float() for k, v in torch_model.state_dict().items()})
    x64, x32 = torch.from_numpy(images), torch.from_numpy(images).float()
    with torch.no_grad():
        for layer64, layer32 in zip(model, model32):
            if isinstance(layer64, MaxAbsPool2d):
                (kh, kw), (sh, sw) = layer64.kernel_size, layer64.stride
                h_out, w_out = layer64(x64).shape[2:]
                a = x64.abs().numpy()
                err = np.maximum(np.abs(x32.double().numpy() - x64.numpy()), np.spacing(np.float32(a)))
                n, c, h, w = a.shape
                padded = np.full((2, n, c, h + kh, w + kw), -1.0)  # -1: never among the top two
                padded[0, :, :, :h, :w], padded[1, :, :, :h, :w] = a, err
                windows = np.lib.stride_tricks.sliding_window_view(padded, (kh, kw), axis=(3, 4))
                windows = windows[:, :, :, : h_out * sh : sh, : w_out * sw : sw].reshape(2, -1, kh * kw)
                order = np.argsort(windows[0], axis=-1)[:, -2:]
                top = np.take_along_axis(windows[0], order, -1)
                top_err = np.take_along_axis(windows[1], order, -1)
                single = top[:, 0] < 0  # a one-element (partial) window
                margin = top[:, 1] - top[:, 0] - POOL_MARGIN * top_err.sum(-1)
                if np.any((margin <= 0) & ~single):
                    return False
            x64, x32 = layer64(x64), layer32(x32)
    return True


def well_posed_batch(architecture, dtype, rng):
    """A random batch and the seed state to build the twin models, with no pooling near-tie."""
    for _ in range(20):
        images, labels = random_batch(architecture, rng)
        state = rng.bit_generator.state
        torch_model, _ = build_pair(architecture, dtype, rng, with_jax=False)
        # float64 rounding (~1e-16) is far below every gap measured (>1e-12)
        if dtype == "float64" or pooling_is_stable(torch_model, images):
            rng.bit_generator.state = state
            return images, labels
    raise AssertionError("no random batch without a pooling near-tie in 20 draws")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("architecture", [FASHION_MNIST, CIFAR10], ids=lambda a: a.name)
def test_network_random_images(architecture, dtype, rng):
    images, labels = well_posed_batch(architecture, dtype, rng)
    _, grads = check_network(architecture, dtype, images, labels, rng, f"{architecture.name} {dtype}")
    for name, value in grads.items():
        assert np.max(np.abs(value)) > 0, f"d/d[{name}] is identically zero"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("architecture", [FASHION_MNIST, CIFAR10], ids=lambda a: a.name)
def test_network_zero_images(architecture, dtype, rng):
    """All-zero images: every SCS output is 0, so the logits are the Linear bias."""
    images = np.zeros((BATCH, *architecture.input_shape))
    labels = rng.integers(0, architecture.num_classes, BATCH)
    loss, grads = check_network(architecture, dtype, images, labels, rng, f"{architecture.name} {dtype} zeros")
    assert np.isfinite(loss)
    assert all(np.all(np.isfinite(g)) for g in grads.values())


# Written out: FASHION_MNIST 1->8 (72+8+1) + 8->16 (1152+16+1) + 16->32 (4608+32+1)
# + Linear (5120+10) = 11,021; CIFAR10 3->16 (432+16+1) + 16->24 (3456+24+1)
# + 24->48 (10368+48+1) + Linear (7680+10) = 22,037.
@pytest.mark.parametrize("architecture,count", [(FASHION_MNIST, 11_021), (CIFAR10, 22_037)], ids=["fashion_mnist", "cifar10"])
def test_parameter_count(architecture, count):
    torch_model = build_torch_model(architecture)
    jax_model = build_jax_model(architecture, rngs=nnx.Rngs(0))
    assert architecture.parameter_count() == count
    assert sum(p.numel() for p in torch_model.parameters()) == count
    assert sum(leaf.size for leaf in jax.tree_util.tree_leaves(nnx.state(jax_model, nnx.Param))) == count
    # and nothing besides parameters lives in the JAX state
    assert sum(leaf.size for leaf in jax.tree_util.tree_leaves(nnx.state(jax_model))) == count

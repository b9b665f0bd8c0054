"""The demo networks built in both frameworks: logits, loss and every parameter's gradient.

torch draws the weights (p and q moved off their initial values), then
``demos.transfer.torch_to_jax`` copies them into the JAX build
(:mod:`helpers.networks`; the gallery's networks: ``test_gallery_parity.py``).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from helpers.networks import (BATCH, POOL_MARGIN, _window_gaps_ok, check_network, check_parameter_count,
                              resolvable_images, well_posed_batch)
from helpers.parity import DTYPES

from demos.architectures import CIFAR10, FASHION_MNIST, SCS, Architecture, Flatten, Linear, MaxAbsPool
from demos.build_torch import build_torch_model
from scs_torch import MaxAbsPool2d


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


def test_a_pooling_near_tie_rejects_only_its_own_image():
    """The batch search's guard: a window whose two largest magnitudes are closer than
    ``POOL_MARGIN`` times their float32 errors marks its image unstable, and only that
    image, ceil_mode's partial windows included."""
    gap = float(np.spacing(np.float32(1.0))) * POOL_MARGIN
    last = [0.7, 0.6, 0.9]  # the third row and column fall in partial windows
    x64 = torch.tensor([[[[1.0, -0.5, 0.25], [0.2, 0.1, 0.5], last]],
                        [[[1.0, 0.5, 0.25], [-(1.0 - gap), 0.1, 0.5], last]],  # near-tie
                        [[[1.0, 0.5, 0.25], [1.0 - 4 * gap, 0.1, 0.5], last]]],
                       dtype=torch.float64)
    pool = MaxAbsPool2d(kernel_size=2, stride=2, ceil_mode=True)
    assert pool(x64).shape[-2:] == (2, 2), "the last row and column are partial windows"
    x32 = x64.float()
    assert _window_gaps_ok(pool, x64, x32).tolist() == [True, False, True]
    x32[2, 0, 1, 0] += 5 * gap  # a float32 error larger than the gap of 4
    assert _window_gaps_ok(pool, x64, x32).tolist() == [True, False, False]


@pytest.mark.parametrize("pooled", [False, True], ids=["unpooled", "pooled"])
def test_a_cosine_near_zero_rejects_only_its_own_image(pooled, rng):
    """The float64 guard: a patch orthogonal to a kernel under an exponent below 1 marks
    its image unresolvable, and only that image; not once a MaxAbsPool drops the element,
    nor with the exponent at 1 (the slope then stays bounded)."""
    pool = (MaxAbsPool(),) if pooled else ()
    architecture = Architecture("cosine_guard", (1, 4, 4), 2, (
        SCS(1, 2, 3), *pool, Flatten(), Linear(2 if pooled else 8, 2)))
    images = rng.random((3, 1, 4, 4))
    patches = np.lib.stride_tricks.sliding_window_view(images[:, 0], (3, 3), axis=(1, 2))
    model = build_torch_model(architecture, dtype=torch.float64)
    with torch.no_grad():  # kernel 0 orthogonal to all four patches of image 2: the pool keeps one
        seen = patches[2].reshape(4, 9)
        kernel = model[0].weight[0, 0].numpy().reshape(9)
        kernel -= seen.T @ np.linalg.solve(seen @ seen.T, seen @ kernel)
        model[0].weight[0, 0] = torch.from_numpy(kernel.reshape(3, 3))
    kernel = kernel.reshape(3, 3)
    patch = images[1, 0, :3, :3]  # one of image 1's patches orthogonal to it
    images[1, 0, :3, :3] = patch - np.sum(patch * kernel) / np.sum(kernel * kernel) * kernel
    for exponent, expected in ((0.25, [True, True, False] if pooled else [True, False, False]),
                               (1.0, [True, True, True])):
        with torch.no_grad():
            model[0].p.fill_(10 * exponent**0.5)
        twin = copy.deepcopy(model)  # the guard caches its copies per model
        assert resolvable_images(architecture, twin, images).tolist() == expected, exponent

# Written out: FASHION_MNIST 1->8 (72+8+1) + 8->16 (1152+16+1) + 16->32 (4608+32+1)
# + Linear (5120+10) = 11,021; CIFAR10 3->16 (432+16+1) + 16->24 (3456+24+1)
# + 24->48 (10368+48+1) + Linear (7680+10) = 22,037.
@pytest.mark.parametrize("architecture,count", [(FASHION_MNIST, 11_021), (CIFAR10, 22_037)], ids=["fashion_mnist", "cifar10"])
def test_parameter_count(architecture, count):
    check_parameter_count(architecture, count)

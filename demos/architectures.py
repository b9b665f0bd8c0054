"""The demo networks, written once as data; ``build_torch`` and ``build_jax`` build them.

Each architecture is a tuple of layer specs. Both frameworks build their
network from the same tuple, so the twins cannot drift: the same layers, the
same sizes, the same order, and a flatten in channels-first order (the JAX
build transposes NHWC to NCHW before flattening) so that the Linear layer's
weights are the same numbers in both. Each demo's registry entry
(:mod:`demos.registry`) names its network.

Sources: the reference networks of brohrer/sharpened_cosine_similarity_torch
(``demo_fashion_mnist.py``, ``demo_cifar10.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = [
    "SCS",
    "MaxAbsPool",
    "Conv",
    "MaxPool",
    "Flatten",
    "Linear",
    "Architecture",
    "FASHION_MNIST",
    "CIFAR10",
    "plain_conv_variant",
]


@dataclass(frozen=True)
class SCS:
    """A sharpened cosine similarity layer (no bias)."""

    in_channels: int
    out_channels: int
    kernel_size: int
    stride: int = 1
    padding: int = 0
    groups: int = 1


@dataclass(frozen=True)
class MaxAbsPool:
    """Max-magnitude pooling, sign kept."""

    kernel_size: int = 2
    stride: int = 2
    ceil_mode: bool = True


@dataclass(frozen=True)
class Conv:
    """A plain convolution with bias (the speed benchmark's comparison network)."""

    in_channels: int
    out_channels: int
    kernel_size: int
    stride: int = 1
    padding: int = 0
    groups: int = 1


@dataclass(frozen=True)
class MaxPool:
    """Plain max pooling (the speed benchmark's comparison network)."""

    kernel_size: int = 2
    stride: int = 2
    ceil_mode: bool = True


@dataclass(frozen=True)
class Flatten:
    """Flatten ``(C, H, W)`` in channels-first order."""


@dataclass(frozen=True)
class Linear:
    """A fully connected layer with bias, torch's default initialisation."""

    in_features: int
    out_features: int


@dataclass(frozen=True)
class Architecture:
    """A demo network: its input ``(C, H, W)``, class count and layer specs."""

    name: str
    input_shape: tuple[int, int, int]
    num_classes: int
    layers: tuple

    def parameter_count(self) -> int:
        """Number of trainable scalars (SCS: weight + p + q; Conv/Linear: weight + bias)."""
        total = 0
        for layer in self.layers:
            if isinstance(layer, SCS):
                total += layer.out_channels * (layer.in_channels // layer.groups) * layer.kernel_size**2
                total += layer.out_channels + 1
            elif isinstance(layer, Conv):
                total += layer.out_channels * (layer.in_channels // layer.groups) * layer.kernel_size**2
                total += layer.out_channels
            elif isinstance(layer, Linear):
                total += layer.in_features * layer.out_features + layer.out_features
        return total


#: SCS 1→8 (k3, pad 0) → pool → SCS 8→16 (k3, pad 1) → pool → SCS 16→32 (k3, pad 1)
#: → pool → flatten → Linear 512→10; 11,021 parameters.
FASHION_MNIST = Architecture(
    name="fashion_mnist",
    input_shape=(1, 28, 28),
    num_classes=10,
    layers=(
        SCS(1, 8, 3, padding=0),
        MaxAbsPool(),
        SCS(8, 16, 3, padding=1),
        MaxAbsPool(),
        SCS(16, 32, 3, padding=1),
        MaxAbsPool(),
        Flatten(),
        Linear(512, 10),
    ),
)

#: SCS 3→16 (k3, pad 0) → pool → SCS 16→24 (k3, pad 1) → pool → SCS 24→48 (k3, pad 1)
#: → pool → flatten → Linear 768→10.
CIFAR10 = Architecture(
    name="cifar10",
    input_shape=(3, 32, 32),
    num_classes=10,
    layers=(
        SCS(3, 16, 3, padding=0),
        MaxAbsPool(),
        SCS(16, 24, 3, padding=1),
        MaxAbsPool(),
        SCS(24, 48, 3, padding=1),
        MaxAbsPool(),
        Flatten(),
        Linear(768, 10),
    ),
)

def plain_conv_variant(architecture: Architecture) -> Architecture:
    """The identical-shape plain network: SCS → Conv (with bias), MaxAbsPool → MaxPool."""
    layers = []
    for layer in architecture.layers:
        if isinstance(layer, SCS):
            layers.append(Conv(**layer.__dict__))
        elif isinstance(layer, MaxAbsPool):
            layers.append(MaxPool(**layer.__dict__))
        else:
            layers.append(layer)
    return replace(architecture, name=architecture.name + "_plain_conv", layers=tuple(layers))

"""The demo networks, written once as data; ``build_torch`` and ``build_jax`` build them.

Each architecture is a tuple of layer specs. Both frameworks build their
network from the same tuple, so the twins cannot drift: the same layers, the
same sizes, the same order, and a flatten in channels-first order (the JAX
build transposes NHWC to NCHW before flattening) so that the Linear layer's
weights are the same numbers in both. Each demo's registry entry
(:mod:`demos.registry`) names its network.

Blocks beyond a plain chain of layers are specs too: :class:`Scale` (a learned
scalar gain) and :class:`Residual` (the sum of two branches, each a tuple of
specs). The gallery's networks (:mod:`demos.gallery`) are built from them.

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
    "Scale",
    "check_scale_arrays",
    "Residual",
    "Architecture",
    "spec_parameter_count",
    "FASHION_MNIST",
    "CIFAR10",
    "plain_conv_variant",
]


@dataclass(frozen=True)
class SCS:
    """A sharpened cosine similarity layer (no bias); ``exponent_init`` and ``floor_init``
    are where its exponent and floor start (the layers' arguments of those names)."""

    in_channels: int
    out_channels: int
    kernel_size: int
    stride: int = 1
    padding: int = 0
    groups: int = 1
    exponent_init: float = 2.0
    floor_init: float = 0.01


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
class Scale:
    """A learned scalar gain ``y = alpha * x``, ``alpha`` starting at ``init`` (one parameter).

    The SCS layer of brohrer/sharpened-cosine-similarity of April 2022 (commit
    22031f1, used by the gallery's ``fashion_90_2764.py``) multiplied its
    output by such a per-layer ``alpha`` (initial value 10). Placed after a
    MaxAbsPool it computes the same function as before it, since
    ``maxabspool(alpha * x) = alpha * maxabspool(x)`` for every real ``alpha``
    (a ``+a``/``-a`` tie aside when ``alpha < 0``); the gallery networks put it
    there so that the SCS layer and its pool still run fused.
    """

    init: float = 10.0


def check_scale_arrays(layer, arrays: dict, shape: tuple) -> None:
    """Raise ``ValueError`` unless ``arrays`` is ``{"weight": array of shape}``, the numpy form
    of a built :class:`Scale` ``layer`` (either framework's)."""
    got = {k: tuple(getattr(v, "shape", ())) for k, v in arrays.items()}
    if got != {"weight": shape}:
        raise ValueError(f"arrays: expected {{'weight': {shape}}} for {type(layer).__name__}, got {got}")


@dataclass(frozen=True)
class Residual:
    """``body(x) + shortcut(x)``: two branches of specs from the same input, summed.

    Args:
        body: the main branch, a non-empty tuple of specs.
        shortcut: the other branch; empty (the default) is the identity.
            Both branches must give the same shape.
    """

    body: tuple
    shortcut: tuple = ()

    def __post_init__(self):
        for name in ("body", "shortcut"):
            value = getattr(self, name)
            if not isinstance(value, tuple):
                raise TypeError(f"Residual.{name}: expected a tuple of layer specs, got {value!r}")
        if not self.body:
            raise ValueError("Residual.body: expected at least one layer spec, got ()")


def spec_parameter_count(spec) -> int:
    """Trainable scalars of one layer spec (SCS: weight + p + q; Conv/Linear: weight + bias;
    Scale: 1; Residual: both branches; pools and Flatten: 0)."""
    if isinstance(spec, (SCS, Conv)):
        weights = spec.out_channels * (spec.in_channels // spec.groups) * spec.kernel_size**2
        return weights + spec.out_channels + (1 if isinstance(spec, SCS) else 0)
    if isinstance(spec, Linear):
        return spec.in_features * spec.out_features + spec.out_features
    if isinstance(spec, Scale):
        return 1
    if isinstance(spec, Residual):
        return sum(spec_parameter_count(s) for s in spec.body + spec.shortcut)
    return 0


@dataclass(frozen=True)
class Architecture:
    """A demo network: its input ``(C, H, W)``, class count and layer specs."""

    name: str
    input_shape: tuple[int, int, int]
    num_classes: int
    layers: tuple

    def parameter_count(self) -> int:
        """Number of trainable scalars (see :func:`spec_parameter_count`)."""
        return sum(spec_parameter_count(layer) for layer in self.layers)


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
            layers.append(Conv(in_channels=layer.in_channels, out_channels=layer.out_channels,
                               kernel_size=layer.kernel_size, stride=layer.stride,
                               padding=layer.padding, groups=layer.groups))
        elif isinstance(layer, MaxAbsPool):
            layers.append(MaxPool(**layer.__dict__))
        else:
            layers.append(layer)
    return replace(architecture, name=architecture.name + "_plain_conv", layers=tuple(layers))

"""Build a PyTorch ``nn.Sequential`` from an architecture of :mod:`demos.architectures`.

The twin of :mod:`demos.build_jax`. Never imports JAX.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from scs_torch import MaxAbsPool2d, SharpenedCosineSimilarity2d
from scs_torch import convert as torch_convert

from . import architectures as A

__all__ = ["build_torch_model", "parameter_layers", "layer_to_numpy", "layer_from_numpy",
           "canonical_parameters", "PoolFusingSequential", "Scale", "Residual"]


class PoolFusingSequential(nn.Sequential):
    """``nn.Sequential`` that runs each SCS layer followed by a MaxAbsPool as one fused call.

    ``layer(x, pool=next_layer)`` (:func:`scs_torch.functional.sharpened_cosine_similarity_max_abs_pool`)
    gives the values of ``next_layer(layer(x))`` (up to how rounding ties are
    broken, see there) with the sharpening done on
    the pooled elements only. The modules, their order and the state dict are
    those of a plain ``nn.Sequential``; iterating over the model still visits
    both layers of a pair. The twin of ``build_jax.PoolFusingSequential``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layers = list(self)
        i = 0
        while i < len(layers):
            layer = layers[i]
            following = layers[i + 1] if i + 1 < len(layers) else None
            if isinstance(layer, SharpenedCosineSimilarity2d) and isinstance(following, MaxAbsPool2d):
                x = layer(x, pool=following)
                i += 2
            else:
                x = layer(x)
                i += 1
        return x


class Scale(nn.Module):
    """``alpha * x`` with one learned scalar ``alpha`` (``weight``, shape ``(1,)``).

    The twin of ``build_jax.Scale``; spec :class:`demos.architectures.Scale`.
    """

    def __init__(self, init: float, *, dtype=None, device=None):
        super().__init__()
        self.weight = nn.Parameter(torch.full((1,), float(init), dtype=dtype, device=device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * x


class Residual(nn.Module):
    """``body(x) + shortcut(x)``, each branch a :class:`PoolFusingSequential` (an empty
    shortcut is the identity). The twin of ``build_jax.Residual``; spec
    :class:`demos.architectures.Residual`."""

    def __init__(self, body: nn.Sequential, shortcut: nn.Sequential):
        super().__init__()
        self.body, self.shortcut = body, shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


def _build_layer(spec, factory: dict) -> nn.Module:
    if isinstance(spec, A.SCS):
        return SharpenedCosineSimilarity2d(
            spec.in_channels, spec.out_channels, spec.kernel_size, spec.stride,
            spec.padding, spec.groups, exponent_init=spec.exponent_init,
            floor_init=spec.floor_init, **factory,
        )
    if isinstance(spec, A.MaxAbsPool):
        return MaxAbsPool2d(spec.kernel_size, spec.stride, spec.ceil_mode)
    if isinstance(spec, A.Conv):
        return nn.Conv2d(
            spec.in_channels, spec.out_channels, spec.kernel_size, spec.stride,
            spec.padding, groups=spec.groups, **factory,
        )
    if isinstance(spec, A.MaxPool):
        return nn.MaxPool2d(spec.kernel_size, spec.stride, ceil_mode=spec.ceil_mode)
    if isinstance(spec, A.Flatten):
        return nn.Flatten()
    if isinstance(spec, A.Linear):
        return nn.Linear(spec.in_features, spec.out_features, **factory)
    if isinstance(spec, A.Scale):
        return Scale(spec.init, **factory)
    if isinstance(spec, A.Residual):
        return Residual(_build_chain(spec.body, factory), _build_chain(spec.shortcut, factory))
    raise TypeError(f"spec: unknown layer spec {spec!r}")


def build_torch_model(
    architecture: A.Architecture, *, dtype: torch.dtype | None = None, device=None
) -> PoolFusingSequential:
    """The architecture as a :class:`PoolFusingSequential`: input ``(N, C, H, W)`` -> logits ``(N, classes)``.

    Parameters are drawn from torch's global RNG (seed it with ``torch.manual_seed``).
    """
    return _build_chain(architecture.layers, {"dtype": dtype, "device": device})


def _build_chain(specs: tuple, factory: dict) -> PoolFusingSequential:
    return PoolFusingSequential(*(_build_layer(spec, factory) for spec in specs))


def parameter_layers(model: nn.Sequential) -> list[nn.Module]:
    """The layers that hold parameters, in order, inside blocks too: a :class:`Residual`'s
    body, then its shortcut (pairs with ``build_jax.parameter_layers``)."""
    layers = []
    for layer in model:
        if isinstance(layer, Residual):
            layers += parameter_layers(layer.body) + parameter_layers(layer.shortcut)
        elif any(True for _ in layer.parameters()):
            layers.append(layer)
    return layers


def layer_to_numpy(layer: nn.Module) -> dict[str, np.ndarray]:
    """``scs_torch.convert.to_numpy``, and the demos' own :class:`Scale` (``{"weight": (1,)}``)."""
    if isinstance(layer, Scale):
        return {"weight": layer.weight.detach().cpu().numpy().copy()}
    return torch_convert.to_numpy(layer)


def layer_from_numpy(layer: nn.Module, arrays: dict) -> None:
    """``scs_torch.convert.from_numpy`` (in place), and the demos' own :class:`Scale`.

    Raises:
        ValueError: ``arrays`` do not hold the layer's tensors with its shapes.
    """
    if isinstance(layer, Scale):
        A.check_scale_arrays(layer, arrays, tuple(layer.weight.shape))
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(np.asarray(arrays["weight"])))
    else:
        torch_convert.from_numpy(layer, arrays)


def canonical_parameters(model: nn.Sequential) -> dict[str, np.ndarray]:
    """``model``'s parameters as canonical numpy, ``{"<i>.<name>": array}``: the ``i``-th of
    :func:`parameter_layers` and the converters' name, in torch's layout."""
    return {f"{i}.{name}": value for i, layer in enumerate(parameter_layers(model))
            for name, value in layer_to_numpy(layer).items()}

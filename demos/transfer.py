"""Copy a demo network's parameters between its torch and JAX builds.

Layer by layer through the numpy converters of ``scs_torch.convert`` and
``scs_jax.convert`` (canonical torch layout): a relabel plus transposes.
Imports both frameworks; the demos themselves never need it.
"""

from __future__ import annotations

from scs_jax import convert as jax_convert
from scs_torch import convert as torch_convert

from . import build_jax, build_torch

__all__ = ["torch_to_jax", "jax_to_torch"]


def _pairs(torch_model, jax_model):
    torch_layers = build_torch.parameter_layers(torch_model)
    jax_layers = build_jax.parameter_layers(jax_model)
    if len(torch_layers) != len(jax_layers):
        raise ValueError(
            f"jax_model: expected {len(torch_layers)} parameterised layers (as torch_model), "
            f"got {len(jax_layers)}"
        )
    return zip(torch_layers, jax_layers)


def torch_to_jax(torch_model, jax_model):
    """Copy every parameter of ``torch_model`` into ``jax_model`` (in place); returns ``jax_model``."""
    for torch_layer, jax_layer in _pairs(torch_model, jax_model):
        jax_convert.from_numpy(jax_layer, torch_convert.to_numpy(torch_layer))
    return jax_model


def jax_to_torch(jax_model, torch_model):
    """Copy every parameter of ``jax_model`` into ``torch_model`` (in place); returns ``torch_model``."""
    for torch_layer, jax_layer in _pairs(torch_model, jax_model):
        torch_convert.from_numpy(torch_layer, jax_convert.to_numpy(jax_layer))
    return torch_model

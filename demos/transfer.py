"""Copy a demo network's parameters between its torch and JAX builds.

Layer by layer through the builders' ``layer_to_numpy`` / ``layer_from_numpy``
(the numpy converters of ``scs_torch.convert`` and ``scs_jax.convert``, canonical
torch layout, and the demos' own :class:`~demos.architectures.Scale`); blocks
(:class:`~demos.architectures.Residual`) are walked into by ``parameter_layers``.
Imports both frameworks; the demos themselves never need it.
"""

from __future__ import annotations

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
        build_jax.layer_from_numpy(jax_layer, build_torch.layer_to_numpy(torch_layer))
    return jax_model


def jax_to_torch(jax_model, torch_model):
    """Copy every parameter of ``jax_model`` into ``torch_model`` (in place); returns ``torch_model``."""
    for torch_layer, jax_layer in _pairs(torch_model, jax_model):
        build_torch.layer_from_numpy(torch_layer, build_jax.layer_to_numpy(jax_layer))
    return torch_model

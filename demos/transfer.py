"""Copy a demo network's parameters between its torch and JAX builds.

Layer by layer through the numpy converters of ``scs_torch.convert`` and
``scs_jax.convert`` (canonical torch layout): a relabel plus transposes; the
demos' own :class:`~demos.architectures.Scale` layers (one scalar ``weight``)
are copied here. Blocks (:class:`~demos.architectures.Residual`) are walked
into by ``parameter_layers``.
Imports both frameworks; the demos themselves never need it.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import torch

from scs_jax import convert as jax_convert
from scs_torch import convert as torch_convert

from . import build_jax, build_torch

__all__ = ["torch_to_jax", "jax_to_torch"]


def _to_numpy_torch(layer) -> dict:
    """``scs_torch.convert.to_numpy``, and the demos' own :class:`build_torch.Scale` (``weight``, ``(1,)``)."""
    if isinstance(layer, build_torch.Scale):
        return {"weight": layer.weight.detach().cpu().numpy().copy()}
    return torch_convert.to_numpy(layer)


def _to_numpy_jax(layer) -> dict:
    """``scs_jax.convert.to_numpy``, and the demos' own :class:`build_jax.Scale`."""
    if isinstance(layer, build_jax.Scale):
        return {"weight": np.array(layer.weight[...])}
    return jax_convert.to_numpy(layer)


def _from_numpy_torch(layer, arrays: dict) -> None:
    if isinstance(layer, build_torch.Scale):
        _check_scale(layer, arrays, tuple(layer.weight.shape))
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(np.asarray(arrays["weight"])))
    else:
        torch_convert.from_numpy(layer, arrays)


def _from_numpy_jax(layer, arrays: dict) -> None:
    if isinstance(layer, build_jax.Scale):
        _check_scale(layer, arrays, tuple(layer.weight[...].shape))
        layer.weight[...] = jnp.asarray(arrays["weight"], layer.weight[...].dtype)
    else:
        jax_convert.from_numpy(layer, arrays)


def _check_scale(layer, arrays: dict, shape: tuple) -> None:
    if set(arrays) != {"weight"} or np.shape(arrays["weight"]) != shape:
        got = {k: np.shape(v) for k, v in arrays.items()}
        raise ValueError(f"arrays: expected {{'weight': {shape}}} for {type(layer).__name__}, got {got}")


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
        _from_numpy_jax(jax_layer, _to_numpy_torch(torch_layer))
    return jax_model


def jax_to_torch(jax_model, torch_model):
    """Copy every parameter of ``jax_model`` into ``torch_model`` (in place); returns ``torch_model``."""
    for torch_layer, jax_layer in _pairs(torch_model, jax_model):
        _from_numpy_torch(torch_layer, _to_numpy_jax(jax_layer))
    return torch_model

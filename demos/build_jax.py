"""Build a Flax NNX network from an architecture of :mod:`demos.architectures`.

The twin of :mod:`demos.build_torch`. Never imports torch. Two choices make
the twins statistically and numerically interchangeable:

- the network flattens in channels-first order (NHWC is transposed to NCHW
  before the flatten), so the Linear weights are torch's, transposed;
- Linear layers start from torch's default distributions (weight and bias
  uniform in ``±1/sqrt(fan_in)``, ``nn.Linear.reset_parameters``), and
  convolutions likewise, instead of Flax's LeCun-normal/zeros.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from scs_jax import MaxAbsPool, SharpenedCosineSimilarity
from scs_jax import convert as jax_convert
from scs_jax import functional as SF

from . import architectures as A

__all__ = [
    "build_jax_model", "parameter_layers", "layer_to_numpy", "layer_from_numpy",
    "canonical_parameters", "PoolFusingSequential", "FlattenChannelsFirst", "MaxPool",
    "Scale", "Residual", "torch_default_init",
]


class PoolFusingSequential(nnx.Sequential):
    """``nnx.Sequential`` that runs each SCS layer followed by a MaxAbsPool as one fused call.

    ``layer(x, pool=next_layer)`` (:func:`scs_jax.functional.sharpened_cosine_similarity_max_abs_pool`)
    gives the values of ``next_layer(layer(x))`` (up to how rounding ties are
    broken, see there) with the sharpening done on
    the pooled elements only. The layers and the state are those of a plain
    ``nnx.Sequential``. The twin of ``build_torch.PoolFusingSequential``.
    """

    def __call__(self, x):
        layers = list(self.layers)
        i = 0
        while i < len(layers):
            layer = layers[i]
            following = layers[i + 1] if i + 1 < len(layers) else None
            if isinstance(layer, SharpenedCosineSimilarity) and isinstance(following, MaxAbsPool):
                x = layer(x, pool=following)
                i += 2
            else:
                x = layer(x)
                i += 1
        return x


def torch_default_init(fan_in: int):
    """Initializer uniform in ``±1/sqrt(fan_in)``: torch's default for Linear/Conv weights and biases."""
    bound = fan_in**-0.5

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class FlattenChannelsFirst(nnx.Module):
    """``(N, H, W, C)`` -> ``(N, C·H·W)`` in torch's ``nn.Flatten`` order."""

    def __call__(self, x):
        return jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)


class MaxPool(nnx.Module):
    """Plain max pooling with torch's ``ceil_mode`` windows (the benchmark's comparison network)."""

    def __init__(self, kernel_size: int, stride: int, ceil_mode: bool):
        self.kernel_size, self.stride, self.ceil_mode = kernel_size, stride, ceil_mode

    def __call__(self, x):
        k, s = self.kernel_size, self.stride
        pads = [
            max((SF.pool_output_size(size, k, s, self.ceil_mode) - 1) * s + k - size, 0)
            for size in x.shape[1:3]
        ]
        return nnx.max_pool(x, (k, k), (s, s), ((0, pads[0]), (0, pads[1])))


class Scale(nnx.Module):
    """``alpha * x`` with one learned scalar ``alpha`` (``weight``, shape ``(1,)``).

    The twin of ``build_torch.Scale``; spec :class:`demos.architectures.Scale`.
    """

    def __init__(self, init: float, *, param_dtype=jnp.float32):
        self.weight = nnx.Param(jnp.full((1,), init, param_dtype))

    def __call__(self, x):
        return self.weight[...] * x


class Residual(nnx.Module):
    """``body(x) + shortcut(x)``, each branch a :class:`PoolFusingSequential` (an empty
    shortcut is the identity). The twin of ``build_torch.Residual``; spec
    :class:`demos.architectures.Residual`."""

    def __init__(self, body: nnx.Sequential, shortcut: nnx.Sequential):
        self.body, self.shortcut = body, shortcut

    def __call__(self, x):
        return self.body(x) + self.shortcut(x)


def _build_layer(spec, param_dtype, rngs: nnx.Rngs):
    if isinstance(spec, A.SCS):
        return SharpenedCosineSimilarity(
            spec.in_channels, spec.out_channels, spec.kernel_size, stride=spec.stride,
            padding=spec.padding, feature_group_count=spec.groups, exponent_init=spec.exponent_init,
            floor_init=spec.floor_init, param_dtype=param_dtype, rngs=rngs,
        )
    if isinstance(spec, A.MaxAbsPool):
        return MaxAbsPool(spec.kernel_size, spec.stride, spec.ceil_mode)
    if isinstance(spec, A.Conv):
        init = torch_default_init((spec.in_channels // spec.groups) * spec.kernel_size**2)
        return nnx.Conv(
            spec.in_channels, spec.out_channels, (spec.kernel_size,) * 2, strides=spec.stride,
            padding=[(spec.padding, spec.padding)] * 2, feature_group_count=spec.groups,
            kernel_init=init, bias_init=init, param_dtype=param_dtype, rngs=rngs,
        )
    if isinstance(spec, A.MaxPool):
        return MaxPool(spec.kernel_size, spec.stride, spec.ceil_mode)
    if isinstance(spec, A.Flatten):
        return FlattenChannelsFirst()
    if isinstance(spec, A.Linear):
        init = torch_default_init(spec.in_features)
        return nnx.Linear(
            spec.in_features, spec.out_features, kernel_init=init, bias_init=init,
            param_dtype=param_dtype, rngs=rngs,
        )
    if isinstance(spec, A.Scale):
        return Scale(spec.init, param_dtype=param_dtype)
    if isinstance(spec, A.Residual):
        return Residual(_build_chain(spec.body, param_dtype, rngs),
                        _build_chain(spec.shortcut, param_dtype, rngs))
    raise TypeError(f"spec: unknown layer spec {spec!r}")


def build_jax_model(
    architecture: A.Architecture, *, rngs: nnx.Rngs, param_dtype=jnp.float32
) -> PoolFusingSequential:
    """The architecture as a :class:`PoolFusingSequential`: input ``(N, H, W, C)`` -> logits ``(N, classes)``."""
    return _build_chain(architecture.layers, param_dtype, rngs)


def _build_chain(specs: tuple, param_dtype, rngs: nnx.Rngs) -> PoolFusingSequential:
    return PoolFusingSequential(*(_build_layer(spec, param_dtype, rngs) for spec in specs))


def parameter_layers(model: nnx.Sequential) -> list:
    """The layers that hold parameters, in order, inside blocks too: a :class:`Residual`'s
    body, then its shortcut (pairs with ``build_torch.parameter_layers``)."""
    layers = []
    for layer in model.layers:
        if isinstance(layer, Residual):
            layers += parameter_layers(layer.body) + parameter_layers(layer.shortcut)
        elif isinstance(layer, (SharpenedCosineSimilarity, nnx.Linear, nnx.Conv, Scale)):
            layers.append(layer)
    return layers


def layer_to_numpy(layer) -> dict[str, np.ndarray]:
    """``scs_jax.convert.to_numpy``, and the demos' own :class:`Scale` (``{"weight": (1,)}``)."""
    if isinstance(layer, Scale):
        return {"weight": np.array(layer.weight[...])}
    return jax_convert.to_numpy(layer)


def layer_from_numpy(layer, arrays: dict) -> None:
    """``scs_jax.convert.from_numpy`` (in place), and the demos' own :class:`Scale`.

    Raises:
        ValueError: ``arrays`` do not hold the layer's tensors with its shapes.
    """
    if isinstance(layer, Scale):
        A.check_scale_arrays(layer, arrays, tuple(layer.weight[...].shape))
        layer.weight[...] = jnp.asarray(arrays["weight"], layer.weight[...].dtype)
    else:
        jax_convert.from_numpy(layer, arrays)


def canonical_parameters(model: nnx.Sequential) -> dict[str, np.ndarray]:
    """``model``'s parameters as canonical numpy, ``{"<i>.<name>": array}``: the ``i``-th of
    :func:`parameter_layers` and the converters' name, in torch's layout."""
    return {f"{i}.{name}": value for i, layer in enumerate(parameter_layers(model))
            for name, value in layer_to_numpy(layer).items()}

"""Parameters to and from numpy, in the canonical layout shared with ``scs_torch``.

The canonical layout is PyTorch's: names ``weight``, ``p``, ``q`` (``bias`` for
a Linear layer) and shapes ``(C_out, C_in // groups, kH, kW)``, ``(C_out,)``,
``(1,)`` (``(out, in)`` for Linear). Here they map onto Flax NNX names and
layouts (``kernel`` as ``(kH, kW, C_in // groups, C_out)``, Linear ``kernel``
as ``(in, out)``) by a relabel and a transpose, never an offset or a
re-scale::

    scs_jax.convert.from_numpy(jax_layer, scs_torch.convert.to_numpy(torch_layer))

torch is never imported here: pass numpy arrays (``tensor.detach().numpy()``).
"""

from __future__ import annotations

from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np
from flax import nnx

from .layers import SharpenedCosineSimilarity

__all__ = ["to_numpy", "from_numpy"]

_SUPPORTED = (SharpenedCosineSimilarity, nnx.Linear, nnx.Conv)


def _check_layer(layer: object) -> None:
    if not isinstance(layer, _SUPPORTED):
        raise TypeError(
            "layer: expected SharpenedCosineSimilarity, nnx.Linear or nnx.Conv, "
            f"got {type(layer).__name__}"
        )


def _layout(layer: nnx.Module) -> dict[str, tuple[str, tuple[int, ...] | None]]:
    """canonical name -> (NNX attribute, transpose from canonical to NNX layout)."""
    if isinstance(layer, SharpenedCosineSimilarity):
        return {"weight": ("kernel", (2, 3, 1, 0)), "p": ("p", None), "q": ("q", None)}
    names: dict[str, tuple[str, tuple[int, ...] | None]] = {
        "weight": ("kernel", (1, 0) if isinstance(layer, nnx.Linear) else (2, 3, 1, 0))
    }
    if getattr(layer, "bias", None) is not None:
        names["bias"] = ("bias", None)
    return names


def _inverse(axes: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(a) for a in np.argsort(axes))


def to_numpy(layer: nnx.Module) -> dict[str, np.ndarray]:
    """The layer's parameters as numpy arrays in the canonical (torch) layout.

    Returns a dict ``name -> array`` (copies, the parameters' dtype).

    Raises:
        TypeError: for an unsupported layer type.

    Examples:
        >>> from flax import nnx
        >>> from scs_jax import SharpenedCosineSimilarity
        >>> arrays = to_numpy(SharpenedCosineSimilarity(2, 4, kernel_size=3, rngs=nnx.Rngs(0)))
        >>> {name: (a.shape, str(a.dtype)) for name, a in arrays.items()}  # torch's layout
        {'weight': ((4, 2, 3, 3), 'float32'), 'p': ((4,), 'float32'), 'q': ((1,), 'float32')}
    """
    _check_layer(layer)
    arrays = {}
    for name, (attribute, axes) in _layout(layer).items():
        value = np.asarray(getattr(layer, attribute)[...])
        arrays[name] = np.array(value if axes is None else value.transpose(_inverse(axes)))
    return arrays


def from_numpy(layer: nnx.Module, arrays: Mapping[str, np.ndarray]) -> nnx.Module:
    """Copy canonical-layout arrays into ``layer``'s parameters, in place.

    Values are cast to each parameter's dtype; names and shapes must match
    exactly. Returns ``layer``.

    Raises:
        TypeError: for an unsupported layer type.
        KeyError, ValueError: naming a missing or extra name or a wrong shape.

    Examples:
        >>> import numpy as np
        >>> from flax import nnx
        >>> from scs_jax import SharpenedCosineSimilarity
        >>> layer = SharpenedCosineSimilarity(1, 2, kernel_size=1, rngs=nnx.Rngs(0))
        >>> arrays = {"weight": np.ones((2, 1, 1, 1)), "p": np.array([10.0, 20.0]), "q": np.zeros(1)}
        >>> from_numpy(layer, arrays).p[...].tolist()
        [10.0, 20.0]
        >>> layer.kernel.shape  # (kH, kW, C_in, C_out)
        (1, 1, 1, 2)
    """
    _check_layer(layer)
    layout = _layout(layer)
    if set(arrays) != set(layout):
        raise KeyError(f"arrays: expected the names {sorted(layout)}, got {sorted(arrays)}")
    for name, (attribute, axes) in layout.items():
        param = getattr(layer, attribute)
        value = np.asarray(arrays[name])
        if axes is not None:
            value = value.transpose(axes)
        if value.shape != tuple(param.shape):
            expected = param.shape if axes is None else tuple(np.array(param.shape)[list(_inverse(axes))])
            raise ValueError(f"arrays[{name!r}]: expected shape {tuple(expected)}, got {np.asarray(arrays[name]).shape}")
        param[...] = jnp.asarray(value, dtype=param.dtype)
    return layer

"""Parameters to and from numpy, in the canonical layout shared with ``scs_jax``.

The canonical layout is PyTorch's: names ``weight``, ``p``, ``q`` (``bias`` for
a Linear layer) and shapes ``(C_out, C_in // groups, kH, kW)``, ``(C_out,)``,
``(1,)`` (``(out, in)`` for Linear). ``scs_jax.convert`` maps the same
dictionaries onto Flax NNX layers, so converting a model between the
frameworks is a relabel plus layout transposes, never an offset or a
re-scale::

    scs_jax.convert.from_numpy(jax_layer, scs_torch.convert.to_numpy(torch_layer))
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from .layers import SharpenedCosineSimilarity2d

__all__ = ["to_numpy", "from_numpy"]

_SUPPORTED = (SharpenedCosineSimilarity2d, nn.Linear, nn.Conv2d)


def _check_layer(layer: object) -> None:
    if not isinstance(layer, _SUPPORTED):
        raise TypeError(
            "layer: expected SharpenedCosineSimilarity2d, nn.Linear or nn.Conv2d, "
            f"got {type(layer).__name__}"
        )


def to_numpy(layer: nn.Module) -> dict[str, np.ndarray]:
    """The layer's parameters as numpy arrays in the canonical (torch) layout.

    Returns a dict ``name -> array`` (copies, the parameters' dtype).

    Raises:
        TypeError: for an unsupported layer type.

    Examples:
        >>> from scs_torch import SharpenedCosineSimilarity2d
        >>> arrays = to_numpy(SharpenedCosineSimilarity2d(2, 4, kernel_size=3))
        >>> {name: (a.shape, str(a.dtype)) for name, a in arrays.items()}
        {'weight': ((4, 2, 3, 3), 'float32'), 'p': ((4,), 'float32'), 'q': ((1,), 'float32')}
    """
    _check_layer(layer)
    return {name: t.detach().cpu().numpy().copy() for name, t in layer.named_parameters()}


def from_numpy(layer: nn.Module, arrays: Mapping[str, np.ndarray]) -> nn.Module:
    """Copy canonical-layout arrays into ``layer``'s parameters, in place.

    Values are cast to each parameter's dtype and device; names and shapes
    must match exactly. Returns ``layer``.

    Raises:
        TypeError: for an unsupported layer type.
        KeyError, ValueError: naming a missing or extra name or a wrong shape.

    Examples:
        >>> import numpy as np
        >>> from scs_torch import SharpenedCosineSimilarity2d
        >>> layer = SharpenedCosineSimilarity2d(1, 2, kernel_size=1)
        >>> arrays = {"weight": np.ones((2, 1, 1, 1)), "p": np.array([10.0, 20.0]), "q": np.zeros(1)}
        >>> from_numpy(layer, arrays).p.tolist()
        [10.0, 20.0]
    """
    _check_layer(layer)
    params = dict(layer.named_parameters())
    if set(arrays) != set(params):
        raise KeyError(f"arrays: expected the names {sorted(params)}, got {sorted(arrays)}")
    with torch.no_grad():
        for name, param in params.items():
            value = np.asarray(arrays[name])
            if value.shape != tuple(param.shape):
                raise ValueError(
                    f"arrays[{name!r}]: expected shape {tuple(param.shape)}, got {value.shape}"
                )
            param.copy_(torch.from_numpy(np.ascontiguousarray(value)).to(param.dtype))
    return layer

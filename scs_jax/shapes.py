"""Argument and size helpers of the layers and functions; framework-free.

Sizes are Python ints or numpy integers; ``bool`` is refused although it is
an ``int`` (``kernel_size=True`` is a mistake, not 1), and so are floats.
Every error names the argument, what was expected and what was received.
``scs_torch.shapes`` is this module's twin, line for line, so that both
libraries accept and reject the same values with the same messages
(``parity_tests/test_shapes.py`` drives both with one table).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import TypeGuard, cast

__all__ = [
    "Size",
    "Padding",
    "positive_int",
    "pair",
    "positive_pair",
    "resolve_padding",
    "pool_output_size",
    "positive_float",
    "check_eps",
    "check_ceil_mode",
]

#: A size per spatial dimension: one int for both, or ``(height, width)``.
Size = int | tuple[int, int]
#: Zero padding: an int, ``(pad_h, pad_w)``, ``((top, bottom), (left, right))``,
#: ``"valid"`` or ``"same"``.
Padding = int | tuple[int, int] | tuple[tuple[int, int], tuple[int, int]] | str


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def positive_int(name: str, value: int) -> int:
    """``value`` as a Python int, checked to be at least 1.

    Raises:
        TypeError: ``value`` is not an int (a bool, a float, anything else).
        ValueError: ``value < 1``.

    Examples:
        >>> import numpy as np
        >>> positive_int("groups", np.int64(4))
        4
        >>> positive_int("groups", 0)
        Traceback (most recent call last):
        ...
        ValueError: groups: expected a positive int, got 0
    """
    if not _is_int(value):
        raise TypeError(f"{name}: expected a positive int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name}: expected a positive int, got {value!r}")
    return int(value)


def pair(name: str, value: Size) -> tuple[int, int]:
    """``(height, width)`` from an int (used for both) or a pair of ints.

    Args:
        name: the argument's name, for the error message.
        value: an int or a 2-tuple/list of ints (numpy integers too).

    Returns:
        A tuple of two Python ints; their signs are not checked.

    Raises:
        TypeError: naming ``name``, for anything else (bools, floats, other lengths).

    Examples:
        >>> pair("kernel_size", 3)
        (3, 3)
        >>> pair("stride", [2, 1])
        (2, 1)
        >>> pair("kernel_size", 2.0)
        Traceback (most recent call last):
        ...
        TypeError: kernel_size: expected an int or a pair of ints, got 2.0
    """
    if _is_int(value):
        return (int(value), int(value))
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(_is_int(v) for v in value):
        return (int(value[0]), int(value[1]))
    raise TypeError(f"{name}: expected an int or a pair of ints, got {value!r}")


def positive_pair(name: str, value: Size) -> tuple[int, int]:
    """:func:`pair`, both sizes checked to be at least 1.

    Raises:
        TypeError: as :func:`pair`.
        ValueError: naming ``name``, when a size is below 1.

    Examples:
        >>> positive_pair("kernel_size", (3, 5))
        (3, 5)
        >>> positive_pair("stride", (1, 0))
        Traceback (most recent call last):
        ...
        ValueError: stride: expected positive sizes, got (1, 0)
    """
    sizes = pair(name, value)
    if min(sizes) < 1:
        raise ValueError(f"{name}: expected positive sizes, got {value!r}")
    return sizes


def resolve_padding(
    padding: Padding, kernel_size: Size, stride: Size = 1
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Explicit zero padding ``((top, bottom), (left, right))``.

    Args:
        padding: an int, a pair ``(pad_h, pad_w)``, a pair of pairs
            ``((top, bottom), (left, right))``, ``"valid"`` (no padding) or
            ``"same"`` (either case; output size = input size; stride 1 only, as
            ``torch.nn.Conv2d``, with the extra pixel of an even kernel on the
            bottom/right, torch's and XLA's rule).
        kernel_size: int or pair.
        stride: int or pair; ``"same"`` requires 1.

    Raises:
        TypeError, ValueError: naming ``padding`` and the received value
        (``kernel_size``/``stride`` for bad sizes).

    Examples:
        >>> resolve_padding(1, kernel_size=3)
        ((1, 1), (1, 1))
        >>> resolve_padding("same", kernel_size=(4, 3))
        ((1, 2), (1, 1))
        >>> resolve_padding("same", kernel_size=3, stride=2)
        Traceback (most recent call last):
        ...
        ValueError: padding: 'same' needs stride 1 (as torch.nn.Conv2d), got stride=2
    """
    kh, kw = positive_pair("kernel_size", kernel_size)
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return ((0, 0), (0, 0))
        if mode == "same":
            if positive_pair("stride", stride) != (1, 1):
                raise ValueError(
                    f"padding: 'same' needs stride 1 (as torch.nn.Conv2d), got stride={stride!r}"
                )
            return ((kh - 1) // 2, kh - 1 - (kh - 1) // 2), ((kw - 1) // 2, kw - 1 - (kw - 1) // 2)
        raise ValueError(f"padding: expected 'valid', 'same', an int or pairs, got {padding!r}")
    if (
        isinstance(padding, (tuple, list))
        and len(padding) == 2
        and all(isinstance(p, (tuple, list)) for p in padding)
    ):
        top_bottom, left_right = cast("tuple[Sequence[int], Sequence[int]]", padding)
        pads = (pair("padding", cast(Size, tuple(top_bottom))), pair("padding", cast(Size, tuple(left_right))))
    else:
        ph, pw = pair("padding", cast(Size, padding))
        pads = ((ph, ph), (pw, pw))
    if min(pads[0] + pads[1]) < 0:
        raise ValueError(f"padding: expected non-negative sizes, got {padding!r}")
    return pads


def pool_output_size(
    size: int, kernel_size: int, stride: int, ceil_mode: bool, *, name: str = "size"
) -> int:
    """Output length of a pooling window sweep, ``torch.nn.MaxPool2d``'s rule (no padding).

    Without ``ceil_mode`` every window lies inside the input. With it a last,
    partial window is kept when it starts inside the input, even when the
    input is shorter than the kernel (size 1, kernel 2, stride 2 gives 1).

    Args:
        size: the input's length along the dimension, a non-negative int.
        kernel_size, stride: of the pooling window along it, positive ints.
        ceil_mode: a bool.
        name: the argument the size comes from, for the error message
            (``"x"`` when the functions check an input).

    Returns:
        The number of windows, at least 1.

    Raises:
        ValueError: naming ``name``, where ``torch.nn.MaxPool2d`` raises: no
            window (``size < kernel_size`` without ``ceil_mode``, ``size <
            kernel_size - stride + 1`` with it); naming the argument for bad
            arguments (TypeError for a wrong type).

    Examples:
        >>> pool_output_size(7, kernel_size=2, stride=2, ceil_mode=False)
        3
        >>> pool_output_size(7, kernel_size=2, stride=2, ceil_mode=True)
        4
        >>> pool_output_size(1, kernel_size=2, stride=2, ceil_mode=True)
        1
        >>> pool_output_size(1, kernel_size=2, stride=2, ceil_mode=False)
        Traceback (most recent call last):
        ...
        ValueError: size: spatial size 1 holds no pooling window of kernel_size 2 with stride 2 and ceil_mode=False; expected at least 2
    """
    if not _is_int(size):
        raise TypeError(f"{name}: expected a non-negative int size, got {size!r}")
    if size < 0:
        raise ValueError(f"{name}: expected a non-negative int size, got {size!r}")
    size = int(size)
    kernel_size = positive_int("kernel_size", kernel_size)
    stride = positive_int("stride", stride)
    check_ceil_mode(ceil_mode)
    if ceil_mode:
        out = -(-(size - kernel_size) // stride) + 1
        if (out - 1) * stride >= size:
            out -= 1
        smallest = max(kernel_size - stride + 1, 1)
    else:
        out = (size - kernel_size) // stride + 1
        smallest = kernel_size
    if out < 1:
        raise ValueError(
            f"{name}: spatial size {size} holds no pooling window of kernel_size {kernel_size} "
            f"with stride {stride} and ceil_mode={ceil_mode}; expected at least {smallest}"
        )
    return out


def positive_float(name: str, value: float) -> float:
    """``value`` as a float: a finite, positive real number, else an error naming ``name``.

    Raises:
        TypeError: not a real number (a bool, a string, ``None``).
        ValueError: zero, negative, infinite or NaN.

    Examples:
        >>> positive_float("floor_init", 0.37)
        0.37
        >>> positive_float("floor_init", 0.0)
        Traceback (most recent call last):
        ...
        ValueError: floor_init: expected a positive finite float, got 0.0
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a positive float, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name}: expected a positive finite float, got {value!r}")
    return float(value)


def check_eps(eps: float) -> float:
    """``eps`` as a float: :func:`positive_float` named ``eps``.

    Examples:
        >>> check_eps(1e-12)
        1e-12
        >>> check_eps(0.0)
        Traceback (most recent call last):
        ...
        ValueError: eps: expected a positive finite float, got 0.0
    """
    return positive_float("eps", eps)


def check_ceil_mode(ceil_mode: bool) -> bool:
    """``ceil_mode`` itself when it is a bool, else a TypeError naming it.

    Examples:
        >>> check_ceil_mode(True)
        True
        >>> check_ceil_mode(1)
        Traceback (most recent call last):
        ...
        TypeError: ceil_mode: expected a bool, got 1
    """
    if not isinstance(ceil_mode, bool):
        raise TypeError(f"ceil_mode: expected a bool, got {ceil_mode!r}")
    return ceil_mode

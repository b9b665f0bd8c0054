"""The shape helpers of both libraries on one table: same results, same errors, same messages.

``scs_torch.shapes`` and ``scs_jax.shapes`` check and convert every size
argument of the layers and functions (kernel sizes, strides, paddings,
pooled sizes, channel counts, ``eps``, ``ceil_mode``). Each row of
:data:`CASES` runs the named helper of both libraries on the same
arguments: a value row expects that value (ints as Python ints), a
:class:`Raises` row expects that exception with a message that starts with
the given text, identical in the two libraries.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np
import pytest

import scs_jax
import scs_torch


@dataclass(frozen=True)
class Raises:
    error: type[Exception]
    message: str


NESTED = ((0, 1), (2, 3))

CASES = [
    # pair: an int for both sizes or a pair; Python and numpy integers; no bools, floats or other lengths
    ("pair", ("kernel_size", 3), (3, 3)),
    ("pair", ("kernel_size", np.int64(3)), (3, 3)),
    ("pair", ("kernel_size", (np.int32(2), 5)), (2, 5)),
    ("pair", ("stride", [1, np.uint8(2)]), (1, 2)),
    ("pair", ("padding", -1), (-1, -1)),
    ("pair", ("kernel_size", True), Raises(TypeError, "kernel_size: expected an int or a pair of ints, got True")),
    ("pair", ("kernel_size", np.bool_(True)), Raises(TypeError, "kernel_size: expected an int or a pair of ints")),
    ("pair", ("kernel_size", 2.0), Raises(TypeError, "kernel_size: expected an int or a pair of ints, got 2.0")),
    ("pair", ("kernel_size", np.float32(2)), Raises(TypeError, "kernel_size: expected an int or a pair of ints")),
    ("pair", ("stride", (2, 2.0)), Raises(TypeError, "stride: expected an int or a pair of ints, got (2, 2.0)")),
    ("pair", ("stride", (2, False)), Raises(TypeError, "stride: expected an int or a pair of ints")),
    ("pair", ("stride", (1, 2, 3)), Raises(TypeError, "stride: expected an int or a pair of ints")),
    ("pair", ("stride", "3"), Raises(TypeError, "stride: expected an int or a pair of ints, got '3'")),
    ("pair", ("stride", None), Raises(TypeError, "stride: expected an int or a pair of ints, got None")),
    # positive_pair: pair, then both sizes >= 1
    ("positive_pair", ("stride", np.uint8(2)), (2, 2)),
    ("positive_pair", ("stride", 0), Raises(ValueError, "stride: expected positive sizes, got 0")),
    ("positive_pair", ("stride", (1, np.int8(0))), Raises(ValueError, "stride: expected positive sizes")),
    ("positive_pair", ("kernel_size", 1.5), Raises(TypeError, "kernel_size: expected an int or a pair of ints")),
    # positive_int: channel and group counts
    ("positive_int", ("groups", np.int64(4)), 4),
    ("positive_int", ("groups", 1), 1),
    ("positive_int", ("groups", 0), Raises(ValueError, "groups: expected a positive int, got 0")),
    ("positive_int", ("groups", True), Raises(TypeError, "groups: expected a positive int, got True")),
    ("positive_int", ("in_channels", 2.0), Raises(TypeError, "in_channels: expected a positive int, got 2.0")),
    # resolve_padding: every form, numpy integers, and what is refused
    ("resolve_padding", (1, 3), ((1, 1), (1, 1))),
    ("resolve_padding", ((1, 2), 3), ((1, 1), (2, 2))),
    ("resolve_padding", (NESTED, 3), NESTED),
    ("resolve_padding", ([[0, 1], [2, 3]], 3), NESTED),
    ("resolve_padding", (np.int64(2), np.int64(5), np.int64(2)), ((2, 2), (2, 2))),
    ("resolve_padding", ("valid", 3), ((0, 0), (0, 0))),
    ("resolve_padding", ("SAME", (4, 3)), ((1, 2), (1, 1))),
    ("resolve_padding", ("same", 5, (1, 1)), ((2, 2), (2, 2))),
    ("resolve_padding", ("same", 3, 2), Raises(ValueError, "padding: 'same' needs stride 1 (as torch.nn.Conv2d), got stride=2")),
    ("resolve_padding", ("full", 3), Raises(ValueError, "padding: expected 'valid', 'same', an int or pairs, got 'full'")),
    ("resolve_padding", (-1, 3), Raises(ValueError, "padding: expected non-negative sizes, got -1")),
    ("resolve_padding", (((0, -1), (0, 0)), 3), Raises(ValueError, "padding: expected non-negative sizes")),
    ("resolve_padding", (1.5, 3), Raises(TypeError, "padding: expected an int or a pair of ints, got 1.5")),
    ("resolve_padding", (True, 3), Raises(TypeError, "padding: expected an int or a pair of ints, got True")),
    ("resolve_padding", (((0, 1), (2,)), 3), Raises(TypeError, "padding: expected an int or a pair of ints, got (2,)")),
    ("resolve_padding", (1, 0), Raises(ValueError, "kernel_size: expected positive sizes, got 0")),
    ("resolve_padding", (1, 3.0), Raises(TypeError, "kernel_size: expected an int or a pair of ints, got 3.0")),
    ("resolve_padding", ("same", 3, 0), Raises(ValueError, "stride: expected positive sizes, got 0")),
    # pool_output_size: torch.nn.MaxPool2d's sizes (test_pool_parity.py checks them against it on a grid)
    ("pool_output_size", (7, 2, 2, False), 3),
    ("pool_output_size", (7, 2, 2, True), 4),
    ("pool_output_size", (8, 3, 3, True), 3),
    ("pool_output_size", (np.int64(5), np.int32(3), np.int16(2), True), 2),
    ("pool_output_size", (1, 2, 2, True), 1),
    ("pool_output_size", (2, 4, 3, True), 1),
    ("pool_output_size", (1, 2, 2, False), Raises(
        ValueError,
        "size: spatial size 1 holds no pooling window of kernel_size 2 with stride 2 and ceil_mode=False; "
        "expected at least 2",
    )),
    ("pool_output_size", (1, 3, 1, True), Raises(
        ValueError,
        "size: spatial size 1 holds no pooling window of kernel_size 3 with stride 1 and ceil_mode=True; "
        "expected at least 3",
    )),
    ("pool_output_size", (0, 1, 2, True), Raises(ValueError, "size: spatial size 0 holds no pooling window")),
    ("pool_output_size", (7.0, 2, 2, False), Raises(TypeError, "size: expected a non-negative int size, got 7.0")),
    ("pool_output_size", (-1, 2, 2, False), Raises(ValueError, "size: expected a non-negative int size, got -1")),
    ("pool_output_size", (True, 1, 1, False), Raises(TypeError, "size: expected a non-negative int size, got True")),
    ("pool_output_size", (7, 2.0, 2, False), Raises(TypeError, "kernel_size: expected a positive int, got 2.0")),
    ("pool_output_size", (7, 2, 0, False), Raises(ValueError, "stride: expected a positive int, got 0")),
    ("pool_output_size", (7, 2, 2, 1), Raises(TypeError, "ceil_mode: expected a bool, got 1")),
    # check_eps: finite positive real numbers, as floats
    ("check_eps", (1e-12,), 1e-12),
    ("check_eps", (np.float64(0.5),), 0.5),
    ("check_eps", (1,), 1.0),
    ("check_eps", (0.0,), Raises(ValueError, "eps: expected a positive finite float, got 0.0")),
    ("check_eps", (-1e-3,), Raises(ValueError, "eps: expected a positive finite float, got -0.001")),
    ("check_eps", (float("nan"),), Raises(ValueError, "eps: expected a positive finite float, got nan")),
    ("check_eps", (float("inf"),), Raises(ValueError, "eps: expected a positive finite float, got inf")),
    ("check_eps", (True,), Raises(TypeError, "eps: expected a positive float, got True")),
    ("check_eps", ("1e-12",), Raises(TypeError, "eps: expected a positive float, got '1e-12'")),
    ("check_eps", (None,), Raises(TypeError, "eps: expected a positive float, got None")),
    # positive_float: the layers' exponent_init and floor_init, as floats
    ("positive_float", ("floor_init", 0.37), 0.37),
    ("positive_float", ("exponent_init", 3), 3.0),
    ("positive_float", ("floor_init", 0.0), Raises(ValueError, "floor_init: expected a positive finite float, got 0.0")),
    ("positive_float", ("exponent_init", -2.0), Raises(ValueError, "exponent_init: expected a positive finite float, got -2.0")),
    ("positive_float", ("floor_init", float("inf")), Raises(ValueError, "floor_init: expected a positive finite float, got inf")),
    ("positive_float", ("exponent_init", False), Raises(TypeError, "exponent_init: expected a positive float, got False")),
    ("positive_float", ("floor_init", "0.37"), Raises(TypeError, "floor_init: expected a positive float, got '0.37'")),
    # check_ceil_mode: a bool, nothing else
    ("check_ceil_mode", (True,), True),
    ("check_ceil_mode", (False,), False),
    ("check_ceil_mode", (1,), Raises(TypeError, "ceil_mode: expected a bool, got 1")),
    ("check_ceil_mode", (np.bool_(True),), Raises(TypeError, "ceil_mode: expected a bool")),
    ("check_ceil_mode", ("yes",), Raises(TypeError, "ceil_mode: expected a bool, got 'yes'")),
]


def _plain(value):
    """``value`` with the types of its leaves, to compare exactly (``3 == np.int64(3)`` would hide one)."""
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    return (type(value).__name__, value)


def test_both_libraries_have_the_same_helpers_and_the_table_covers_them():
    assert scs_torch.shapes.__all__ == scs_jax.shapes.__all__
    functions = {name for name in scs_torch.shapes.__all__ if inspect.isfunction(getattr(scs_torch.shapes, name))}
    assert functions == {case[0] for case in CASES}


@pytest.mark.parametrize("function,args,expected", CASES, ids=[f"{c[0]}{c[1]!r}" for c in CASES])
def test_helpers_alike(function, args, expected):
    outcomes = []
    for library in (scs_torch, scs_jax):
        helper = getattr(library.shapes, function)
        if isinstance(expected, Raises):
            with pytest.raises(expected.error) as info:
                helper(*args)
            message = str(info.value)
            assert message.startswith(expected.message), f"{library.__name__}: {message}"
            outcomes.append(message)
        else:
            outcomes.append(_plain(helper(*args)))
            assert outcomes[-1] == _plain(expected), f"{library.__name__}: {outcomes[-1]}"
    assert outcomes[0] == outcomes[1]

"""MaxAbsPool's two ``max_pool2d`` calls and its one-scatter backward (NCHW).

``scs_jax._maxabs`` is the twin (window maxima and an elementwise routing pass).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def max_abs_pool_with_indices(
    x: torch.Tensor, kernel_size: tuple[int, int], stride: tuple[int, int], ceil_mode: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """MaxAbsPool's output and, per window, the flat ``H·W`` index of the element it returns."""
    largest, at_largest = F.max_pool2d(x, kernel_size, stride, 0, 1, ceil_mode, True)
    smallest_negated, at_smallest = F.max_pool2d(x.neg(), kernel_size, stride, 0, 1, ceil_mode, True)
    keep = largest >= smallest_negated
    return torch.where(keep, largest, smallest_negated.neg_()), torch.where(keep, at_largest, at_smallest)


def max_abs_pool_values(
    x: torch.Tensor, kernel_size: tuple[int, int], stride: tuple[int, int], ceil_mode: bool
) -> torch.Tensor:
    """MaxAbsPool's output without indices (no gradient needed): the two ``max_pool2d`` maxima."""
    largest = F.max_pool2d(x, kernel_size, stride, 0, 1, ceil_mode)
    smallest_negated = F.max_pool2d(x.neg(), kernel_size, stride, 0, 1, ceil_mode)
    return torch.where(largest >= smallest_negated, largest, smallest_negated.neg_())


class MaxAbsPoolFunction(torch.autograd.Function):
    """``max_abs_pool``'s forward with both ``max_pool2d`` calls, and a one-pass backward.

    The element each window returns is the first maximum of ``x`` (``+a``
    wins the tie with ``-a``) or the first maximum of ``-x``, found by
    ``max_pool2d`` exactly as the two-pool expression does; its index is kept
    and the upstream gradient is scattered there once
    (``max_pool2d_with_indices_backward``), instead of two scatters of full
    size, their sum and the negation's backward.

    Written for ``torch.func`` (``setup_context``, ``generate_vmap_rule``): ``apply``
    returns the output and the chosen elements' indices (non-differentiable).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x, kernel_size, stride, ceil_mode):
        return max_abs_pool_with_indices(x, kernel_size, stride, ceil_mode)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, kernel_size, stride, ceil_mode = inputs
        ctx.mark_non_differentiable(output[1])
        ctx.save_for_backward(x, output[1])
        ctx.pool_args = (kernel_size, stride, ceil_mode)

    @staticmethod
    def backward(ctx, grad, _):
        x, indices = ctx.saved_tensors
        kernel_size, stride, ceil_mode = ctx.pool_args
        grad_x = torch.ops.aten.max_pool2d_with_indices_backward(
            grad, x, list(kernel_size), list(stride), [0, 0], [1, 1], ceil_mode, indices
        )
        return grad_x, None, None, None

"""scs_torch's hand-written autograd Functions under ``torch.func`` (what parallel runs use).

``torch.func.vmap`` of the SCS functions and of MaxAbsPool, and ``vmap`` of
``torch.func.grad`` through them, equal a loop over the batch of problems
(float64, relative 1e-12; the Functions' batching rules are generated from
their forward and backward, ``generate_vmap_rule``), whichever of the input
and the parameters carry the batch. One level of ``torch.func.grad`` is a
first-order gradient and works; two levels are second order, which the
hand-written backwards cannot give, and raise as ``create_graph=True`` does.
"""

from __future__ import annotations

import pytest
import torch
from torch.func import grad, vmap

from scs_torch import functional as SF

K = 3


def _problem(seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)

    def draw(*shape, low=-1.0, high=1.0):
        return low + (high - low) * torch.rand(*shape, generator=generator, dtype=torch.float64)

    return {"x": draw(K, 2, 4, 7, 6), "weight": draw(K, 6, 2, 3, 3),
            "p": draw(K, 6, low=8.0, high=20.0), "q": draw(K, 1, low=5.0, high=15.0)}


def _scs(x, weight, p, q):
    return SF.sharpened_cosine_similarity(x, weight, p, q, padding=1, groups=2)


def _scs_pool(x, weight, p, q):
    return SF.sharpened_cosine_similarity_max_abs_pool(x, weight, p, q, padding=1, groups=2, ceil_mode=True)


def _pool_of_scs(x, weight, p, q):
    return SF.max_abs_pool(_scs(x, weight, p, q), 2, ceil_mode=True)


FUNCTIONS = {"scs": _scs, "scs_max_abs_pool": _scs_pool, "max_abs_pool": _pool_of_scs}
#: Which of (x, weight, p, q) carry the batch of problems (None: shared, the first problem's).
IN_DIMS = {"all": (0, 0, 0, 0), "input": (0, None, None, None), "parameters": (None, 0, 0, 0)}


def _args(problem: dict, in_dims: tuple, k: int | None) -> list[torch.Tensor]:
    """The arguments of problem ``k`` (``None``: the batched arguments for vmap)."""
    names = ("x", "weight", "p", "q")
    return [problem[n] if (k is None and d == 0) else problem[n][0 if d is None else k]
            for n, d in zip(names, in_dims)]


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


@pytest.mark.parametrize("in_dims", IN_DIMS)
@pytest.mark.parametrize("name", FUNCTIONS)
def test_vmap_of_values_and_gradients_equals_a_loop(name, in_dims):
    function, dims, problem = FUNCTIONS[name], IN_DIMS[in_dims], _problem(7)

    def loss(x, weight, p, q):  # cubed: every output gets its own weight in the gradient
        return function(x, weight, p, q).pow(3).sum()

    values = vmap(function, in_dims=dims)(*_args(problem, dims, None))
    gradients = vmap(grad(loss, argnums=(0, 1, 2, 3)), in_dims=dims)(*_args(problem, dims, None))
    for k in range(K):
        args = [a.clone().requires_grad_() for a in _args(problem, dims, k)]
        expected = function(*args)
        assert _relative(values[k], expected.detach()) <= 1e-12
        expected_gradients = torch.autograd.grad(loss(*args), args)
        for g, e, what in zip(gradients, expected_gradients, ("x", "weight", "p", "q")):
            assert _relative(g[k], e) <= 1e-12, f"d/d{what} of problem {k}"


def test_one_grad_level_works_two_raise():
    problem = _problem(3)
    args = _args(problem, IN_DIMS["all"], 0)

    def loss(x, weight, p, q):
        return _scs_pool(x, weight, p, q).square().sum()

    first = grad(loss, argnums=1)(*args)
    expected = torch.autograd.grad(loss(args[0], w := args[1].clone().requires_grad_(), *args[2:]), w)[0]
    assert _relative(first, expected) <= 1e-12
    with pytest.raises(RuntimeError, match="second-order gradients .* are not supported by scs_torch"):
        grad(lambda *a: grad(loss, argnums=1)(*a).sum(), argnums=1)(*args)

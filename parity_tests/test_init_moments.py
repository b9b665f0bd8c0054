"""The initial distributions again, tighter: 10⁵ draws per tensor, moments and KS.

``test_init_distributions.py`` compares 5,000 draws per tensor. Here every
uniform tensor of the Fashion-MNIST network gets 100,000 draws per framework,
from whole networks built as the demo trainers build them (torch:
``torch.manual_seed(seed)`` + ``build_torch_model``; JAX: ``build_jax_model``
with ``nnx.Rngs(seed)``, many seeds at once under ``jax.vmap``, which draws
the same numbers as one build per seed), seeds ``0 .. models - 1``. Checked:

* the first, second and fourth moments of each side against the analytic
  uniform law ``U(±b)`` (mean 0, ``b²/3``, ``b⁴/5``) within 4.5 standard errors
  of the estimators (their variances ``b²/3n``, ``4b⁴/45n``, ``16b⁸/225n``),
  and torch's against JAX's within 4.5 combined standard errors;
* a one-sample KS test of each side against ``U(±b)`` and a two-sample KS
  test of torch against JAX, p > 0.001.

Fixed seeds make every statistic deterministic: the test cannot flake. With
10⁵ draws, 4.5 standard errors of the variance is 0.3 % of ``b²/3``: a bound
off by 1 % (e.g. a fan computed with the wrong groups) fails.
"""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest
import torch
from flax import nnx
from scipy import stats

from demos import build_jax, build_torch
from demos.architectures import FASHION_MNIST, SCS, Linear
from scs_torch import convert as torch_convert

N_DRAWS = 100_000
Z_MAX = 4.5
P_MIN = 1e-3


def _bounds() -> dict[str, float]:
    """Canonical tensor name -> half-width of its uniform initial law."""
    bounds = {}
    specs = [s for s in FASHION_MNIST.layers if isinstance(s, (SCS, Linear))]
    for i, spec in enumerate(specs):
        if isinstance(spec, SCS):
            receptive = spec.kernel_size**2
            fan_in, fan_out = spec.in_channels // spec.groups * receptive, spec.out_channels * receptive
            bounds[f"{i}.weight"] = math.sqrt(6.0 / (fan_in + fan_out))  # Xavier uniform
        else:
            bounds[f"{i}.weight"] = bounds[f"{i}.bias"] = 1.0 / math.sqrt(spec.in_features)
    return bounds


BOUNDS = _bounds()


def _tensor_sizes() -> dict[str, int]:
    torch.manual_seed(0)
    model = build_torch.build_torch_model(FASHION_MNIST)
    return {f"{i}.{name}": value.size for i, layer in enumerate(build_torch.parameter_layers(model))
            for name, value in torch_convert.to_numpy(layer).items()}


SIZES = _tensor_sizes()


def _models_needed(name: str) -> int:
    """Networks to build so that tensor ``name`` gets N_DRAWS draws."""
    return -(-N_DRAWS // SIZES[name])


@pytest.fixture(scope="module")
def torch_draws() -> dict[str, np.ndarray]:
    pooled: dict[str, list] = {name: [] for name in BOUNDS}
    for seed in range(max(map(_models_needed, BOUNDS))):
        torch.manual_seed(seed)  # as TorchTrainer
        model = build_torch.build_torch_model(FASHION_MNIST)
        for i, layer in enumerate(build_torch.parameter_layers(model)):
            for name, value in torch_convert.to_numpy(layer).items():
                if f"{i}.{name}" in pooled and seed < _models_needed(f"{i}.{name}"):
                    pooled[f"{i}.{name}"].append(value.ravel())
    return {name: np.concatenate(parts)[:N_DRAWS].astype(np.float64) for name, parts in pooled.items()}


#: Canonical tensor name -> the NNX layer's attribute (layouts differ; a law does not).
NNX_NAMES = {"weight": "kernel", "bias": "bias", "p": "p", "q": "q"}


def _jax_tensors(model) -> dict:
    """``{"<i>.<canonical name>": the NNX array}`` of a JAX build (its own layout)."""
    return {f"{i}.{name}": getattr(layer, NNX_NAMES[name])[...]
            for i, layer in enumerate(build_jax.parameter_layers(model))
            for name in NNX_NAMES if f"{i}.{name}" in BOUNDS and hasattr(layer, NNX_NAMES[name])}


@pytest.fixture(scope="module")
def jax_draws() -> dict[str, np.ndarray]:
    draws = {}
    for name in BOUNDS:  # one compile per tensor: XLA drops the other layers' draws
        def tensor(key, name=name):
            return _jax_tensors(build_jax.build_jax_model(FASHION_MNIST, rngs=nnx.Rngs(key)))[name]

        keys = jax.vmap(jax.random.key)(np.arange(_models_needed(name)))
        draws[name] = np.asarray(jax.jit(jax.vmap(tensor))(keys)).reshape(-1)[:N_DRAWS].astype(np.float64)
    return draws


def test_jax_vmapped_builds_draw_what_single_builds_draw(jax_draws):
    """Seed 3 under vmap equals one build with nnx.Rngs(3) (so the sample is the trainers')."""
    single = _jax_tensors(build_jax.build_jax_model(FASHION_MNIST, rngs=nnx.Rngs(3)))
    for name in BOUNDS:
        values = np.asarray(single[name], np.float64).ravel()
        np.testing.assert_array_equal(jax_draws[name][3 * values.size: 4 * values.size], values, err_msg=name)


def _moments(x: np.ndarray) -> np.ndarray:
    return np.array([x.mean(), (x**2).mean(), (x**4).mean()])


def _standard_errors(b: float, n: int) -> np.ndarray:
    return np.sqrt(np.array([b**2 / 3, 4 * b**4 / 45, 16 * b**8 / 225]) / n)


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_moments_match_the_uniform_law_and_each_other(name, torch_draws, jax_draws):
    b = BOUNDS[name]
    expected = np.array([0.0, b**2 / 3, b**4 / 5])
    se = _standard_errors(b, N_DRAWS)
    for side, draws in (("torch", torch_draws[name]), ("jax", jax_draws[name])):
        assert draws.size == N_DRAWS
        z = (_moments(draws) - expected) / se
        print(f"\n{side} {name}: z of mean, E[x²], E[x⁴] vs U(±{b:.4f}): {np.round(z, 2)}")
        assert np.all(np.abs(z) < Z_MAX), f"{side} {name}: moments off U(±{b:.4g}) by {z} standard errors"
    z = (_moments(torch_draws[name]) - _moments(jax_draws[name])) / (se * math.sqrt(2))
    assert np.all(np.abs(z) < Z_MAX), f"{name}: torch and JAX moments differ by {z} standard errors"


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_ks_against_the_uniform_law_and_each_other(name, torch_draws, jax_draws):
    b = BOUNDS[name]
    law = stats.uniform(loc=-b, scale=2 * b).cdf
    for side, draws in (("torch", torch_draws[name]), ("jax", jax_draws[name])):
        p = stats.kstest(draws, law).pvalue
        assert p > P_MIN, f"{side} {name}: not U(±{b:.4g}) (KS p={p:.2e})"
    p = stats.ks_2samp(torch_draws[name], jax_draws[name]).pvalue
    print(f"\nKS torch vs JAX {name}, {N_DRAWS} draws each: p={p:.3f}")
    assert p > P_MIN, f"{name}: torch and JAX initial laws differ (KS p={p:.2e})"


def test_the_moment_test_sees_a_one_percent_wrong_bound(torch_draws):
    """Power: the same draws scaled by 1.01 (a bound 1 % too wide) fail the variance check."""
    name = "2.weight"
    b = BOUNDS[name]
    z = (_moments(1.01 * torch_draws[name]) - np.array([0.0, b**2 / 3, b**4 / 5])) / _standard_errors(b, N_DRAWS)
    assert abs(z[1]) > Z_MAX

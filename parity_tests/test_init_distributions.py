"""The Fashion-MNIST network starts from the same distributions in torch and JAX.

Both sides draw their parameters exactly as the demo trainers do:
``torch.manual_seed(seed)`` + ``demos.build_torch.build_torch_model`` and
``demos.build_jax.build_jax_model(rngs=nnx.Rngs(seed))``, for the fixed seeds
``0 .. N_MODELS - 1`` on each side (independent generators, so equal seed
numbers do not couple the samples). Every tensor is read in the canonical
(torch) layout through the numpy converters.

* SCS weights (Xavier uniform), the Linear weight and the Linear bias (torch's
  ``nn.Linear`` default, uniform in ``±1/sqrt(fan_in)``): a two-sample
  Kolmogorov–Smirnov test (``scipy.stats.ks_2samp``) of ``N_DRAWS`` draws per
  side must give p > 0.01, and each side must also pass a one-sample KS test
  against the analytic uniform law (so the two frameworks do not merely agree
  on a wrong distribution).
* SCS ``p`` and ``q`` are constants: equal to ``P_INIT`` / ``Q_INIT`` in every
  model of both frameworks.

The elements of one tensor are i.i.d. draws, so a sample is the tensor's
elements pooled over models in seed order and cut at ``N_DRAWS``. Fixed seeds
make every p-value deterministic: the test cannot flake, and the p-values
are printed (``pytest -s``). A power check shows that at this sample size
the two-sample test rejects the nearest plausible mistakes (the initializer a
plain ``nn.Conv2d`` / ``nnx.Linear`` would use instead).
"""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest
import torch
from flax import nnx
from scipy import stats

import scs_jax
import scs_jax.functional as jax_functional
import scs_torch
import scs_torch.functional as torch_functional
from demos import build_jax, build_torch
from demos.architectures import FASHION_MNIST, SCS, Architecture, Flatten, Linear
from scs_jax import convert as jax_convert
from scs_torch import convert as torch_convert

#: Draws per tensor and side ("several thousand"); the Linear bias holds 10
#: values per model, so N_DRAWS / 10 models are built on each side.
N_DRAWS = 5000
N_MODELS = 500
P_MIN = 0.01


def _expected_bounds() -> dict[str, float]:
    """Canonical tensor name -> half-width of its uniform initial distribution."""
    bounds = {}
    param_specs = [spec for spec in FASHION_MNIST.layers if isinstance(spec, (SCS, Linear))]
    for i, spec in enumerate(param_specs):
        if isinstance(spec, SCS):
            receptive = spec.kernel_size**2
            fan_in = spec.in_channels // spec.groups * receptive
            fan_out = spec.out_channels * receptive
            bounds[f"{i}.weight"] = math.sqrt(6.0 / (fan_in + fan_out))  # Xavier uniform
        else:
            bounds[f"{i}.weight"] = bounds[f"{i}.bias"] = 1.0 / math.sqrt(spec.in_features)
    return bounds


BOUNDS = _expected_bounds()
UNIFORM_TENSORS = sorted(BOUNDS)  # 0.weight 1.weight 2.weight 3.bias 3.weight
SCS_LAYERS = [i for i, spec in enumerate(s for s in FASHION_MNIST.layers if isinstance(s, (SCS, Linear)))
              if isinstance(spec, SCS)]


def _canonical(layers, convert) -> dict[str, np.ndarray]:
    return {f"{i}.{name}": value for i, layer in enumerate(layers)
            for name, value in convert.to_numpy(layer).items()}


def _pool(models: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """name -> every model's values concatenated in seed order (float64)."""
    return {name: np.concatenate([m[name].ravel() for m in models]).astype(np.float64)
            for name in models[0]}


@pytest.fixture(scope="module")
def torch_draws():
    models = []
    for seed in range(N_MODELS):
        torch.manual_seed(seed)  # as TorchTrainer
        model = build_torch.build_torch_model(FASHION_MNIST)
        models.append(_canonical(build_torch.parameter_layers(model), torch_convert))
    return _pool(models)


@pytest.fixture(scope="module")
def jax_draws():
    models = []
    for seed in range(N_MODELS):
        model = build_jax.build_jax_model(FASHION_MNIST, rngs=nnx.Rngs(seed))  # as JaxTrainer
        models.append(_canonical(build_jax.parameter_layers(model), jax_convert))
    return _pool(models)


def test_same_tensors_and_enough_draws(torch_draws, jax_draws):
    assert sorted(torch_draws) == sorted(jax_draws)
    for name in UNIFORM_TENSORS:
        assert torch_draws[name].size >= N_DRAWS and jax_draws[name].size >= N_DRAWS, name
    # One seed draws one network: different seeds give different tensors.
    assert not np.array_equal(torch_draws["3.bias"][:10], torch_draws["3.bias"][10:20])
    assert not np.array_equal(jax_draws["3.bias"][:10], jax_draws["3.bias"][10:20])


@pytest.mark.parametrize("name", UNIFORM_TENSORS)
def test_two_sample_ks(name, torch_draws, jax_draws):
    t, j = torch_draws[name][:N_DRAWS], jax_draws[name][:N_DRAWS]
    result = stats.ks_2samp(t, j)
    print(f"\nKS torch vs JAX {name}: D={result.statistic:.4f} p={result.pvalue:.3f}")
    assert result.pvalue > P_MIN, f"{name}: torch and JAX initial distributions differ (KS p={result.pvalue:.2e})"
    # Both inside the analytic support (a uniform law's sample comes close to it).
    bound = BOUNDS[name]
    for side, x in (("torch", t), ("jax", j)):
        assert np.all(np.abs(x) <= bound * (1 + 1e-6)), f"{side} {name}: values outside ±{bound:.4g}"
        assert np.max(np.abs(x)) > 0.99 * bound, f"{side} {name}: never comes near ±{bound:.4g}"


@pytest.mark.parametrize("name", UNIFORM_TENSORS)
@pytest.mark.parametrize("side", ["torch", "jax"])
def test_one_sample_ks_against_analytic_law(name, side, torch_draws, jax_draws):
    x = (torch_draws if side == "torch" else jax_draws)[name][:N_DRAWS]
    bound = BOUNDS[name]
    result = stats.kstest(x, stats.uniform(loc=-bound, scale=2 * bound).cdf)
    print(f"\nKS {side} {name} vs U(±{bound:.4f}): D={result.statistic:.4f} p={result.pvalue:.3f}")
    assert result.pvalue > P_MIN, f"{side} {name}: not U(±{bound:.4g}) (KS p={result.pvalue:.2e})"


@pytest.mark.parametrize("layer", SCS_LAYERS)
def test_p_and_q_are_the_same_constants(layer, torch_draws, jax_draws):
    spec = [s for s in FASHION_MNIST.layers if isinstance(s, (SCS, Linear))][layer]
    assert torch_functional.P_INIT == jax_functional.P_INIT
    assert torch_functional.Q_INIT == jax_functional.Q_INIT
    for side, draws in (("torch", torch_draws), ("jax", jax_draws)):
        p, q = draws[f"{layer}.p"], draws[f"{layer}.q"]
        assert p.shape == (N_MODELS * spec.out_channels,), (side, p.shape)
        assert q.shape == (N_MODELS,), (side, q.shape)
        # float32 parameters: the constant rounded to float32 once, in every model.
        np.testing.assert_array_equal(p, np.float32(torch_functional.P_INIT), err_msg=f"{side} p")
        np.testing.assert_array_equal(q, np.float32(torch_functional.Q_INIT), err_msg=f"{side} q")


@pytest.mark.parametrize("exponent, floor", [(2.0, 0.01), (3.0, 0.37), (0.5, 1e-4)])
def test_exponent_and_floor_start_where_asked(exponent, floor):
    """``exponent_init`` / ``floor_init`` of an architecture's SCS spec reach both frameworks'
    layers: the same p and q, whose exponent ``(p/10)²`` and floor ``(q/100)²`` are the
    ones asked (float64 parameters: to rounding)."""
    arch = Architecture("inits", (1, 6, 6), 3, (
        SCS(1, 4, 3, exponent_init=exponent, floor_init=floor), Flatten(), Linear(4 * 16, 3)))
    torch_side = build_torch.canonical_parameters(build_torch.build_torch_model(arch, dtype=torch.float64))
    with jax.enable_x64(True):
        jax_side = build_jax.canonical_parameters(
            build_jax.build_jax_model(arch, rngs=nnx.Rngs(0), param_dtype=jax.numpy.float64))
    for side, params in (("torch", torch_side), ("jax", jax_side)):
        p, q = params["0.p"], params["0.q"]
        assert p.dtype == q.dtype == np.float64, side
        np.testing.assert_allclose((p / 10) ** 2, np.full(4, exponent), rtol=1e-15, err_msg=side)
        np.testing.assert_allclose((q / 100) ** 2, [floor], rtol=1e-15, err_msg=side)
    np.testing.assert_array_equal(torch_side["0.p"], jax_side["0.p"])
    np.testing.assert_array_equal(torch_side["0.q"], jax_side["0.q"])
    if (exponent, floor) == (2.0, 0.01):  # the defaults are the reference's constants, exactly
        assert (torch_side["0.p"][0], torch_side["0.q"][0]) == (torch_functional.P_INIT,
                                                                torch_functional.Q_INIT)


@pytest.mark.parametrize("argument, value, error", [
    ("exponent_init", 0.0, "exponent_init: expected a positive finite float, got 0.0"),
    ("floor_init", -0.1, "floor_init: expected a positive finite float, got -0.1"),
    ("floor_init", float("nan"), "floor_init: expected a positive finite float, got nan"),
])
def test_bad_exponent_or_floor_is_refused_by_both_layers(argument, value, error):
    with pytest.raises(ValueError, match=f"^{error}$"):
        scs_torch.SharpenedCosineSimilarity2d(1, 2, 3, **{argument: value})
    with pytest.raises(ValueError, match=f"^{error}$"):
        scs_jax.SharpenedCosineSimilarity(1, 2, 3, **{argument: value}, rngs=nnx.Rngs(0))


# The nearest plausible mistakes and what KS says about them at N_DRAWS (measured, fixed seeds):
# the SCS kernel drawn like a plain convolution (kaiming uniform a=sqrt(5), i.e. U(±1/sqrt(fan_in)))
# and the Linear kernel drawn with Flax's default (LeCun normal) must both be rejected.
@pytest.mark.parametrize("name,wrong", [("0.weight", "conv_default"), ("2.weight", "conv_default"),
                                        ("3.weight", "lecun_normal")])
def test_ks_rejects_plausible_wrong_initializers(name, wrong, torch_draws):
    layer = int(name.split(".")[0])
    spec = [s for s in FASHION_MNIST.layers if isinstance(s, (SCS, Linear))][layer]
    key = jax.random.key(12345)
    if wrong == "conv_default":
        fan_in = spec.in_channels // spec.groups * spec.kernel_size**2
        init = build_jax.torch_default_init(fan_in)
        draws = init(key, (N_DRAWS,))
    else:
        draws = nnx.initializers.lecun_normal()(key, (spec.in_features, N_DRAWS // spec.in_features + 1))
    draws = np.asarray(draws, np.float64).ravel()[:N_DRAWS]
    result = stats.ks_2samp(torch_draws[name][:N_DRAWS], draws)
    print(f"\nKS torch {name} vs {wrong}: D={result.statistic:.4f} p={result.pvalue:.1e}")
    assert result.pvalue < 1e-6, f"{name} vs {wrong}: KS cannot tell them apart (p={result.pvalue:.2e})"


def test_torch_reset_parameters_returns_to_the_asked_start():
    layer = scs_torch.SharpenedCosineSimilarity2d(1, 2, 3, exponent_init=3.0, floor_init=0.37)
    assert "exponent_init=3.0, floor_init=0.37" in repr(layer)
    start = {name: value.detach().clone() for name, value in layer.named_parameters()}
    with torch.no_grad():
        layer.p.add_(1.0)
        layer.q.add_(1.0)
    layer.reset_parameters()
    assert torch.equal(layer.p, start["p"]) and torch.equal(layer.q, start["q"])
    assert "_init" not in repr(scs_torch.SharpenedCosineSimilarity2d(1, 2, 3))  # defaults: not shown
    # The new arguments come after device and dtype: calls passing those by position still work.
    layer = scs_torch.SharpenedCosineSimilarity2d(1, 2, 3, 1, 0, 1, 1e-12, "cpu", torch.float64)
    assert layer.p.dtype == torch.float64 and layer.p[0].item() == torch_functional.P_INIT

"""Whole demo networks in both frameworks: logits, loss and every parameter's gradient.

Any architecture of :mod:`demos.architectures` (blocks included: a
:class:`~demos.architectures.Residual`'s branches, :class:`~demos.architectures.Scale`
gains): torch draws the weights (p and q moved off their initial values, the
gains off 10), then ``demos.transfer.torch_to_jax`` copies them into the JAX
build; the loss is cross-entropy with optional label smoothing
(:mod:`demos.losses`). Used by ``test_network_parity.py`` (the reference
networks) and ``test_gallery_parity.py`` (the gallery's).
"""

from __future__ import annotations

import contextlib
import functools

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F
from flax import nnx

from demos.build_jax import build_jax_model
from demos.build_torch import Residual, Scale, build_torch_model
from demos.losses import smoothed_cross_entropy
from demos.transfer import torch_to_jax
from scs_torch import MaxAbsPool2d, SharpenedCosineSimilarity2d
from scs_torch import functional as SF

from .parity import (
    ILL_CONDITIONED,
    P_PARAM_RANGE,
    Q_PARAM_RANGE,
    TOLERANCES,
    TORCH_DTYPES,
    assert_close,
    check_float32,
    jax_precision,
    kernel_to_weight,
    to_numpy,
    torch_native_convolutions,
)

__all__ = ["BATCH", "POOL_MARGIN", "SCALE_RANGE", "build_pair", "torch_loss_and_grads",
           "jax_loss_and_grads", "check_network", "check_parameter_count", "random_batch",
           "resolvable_images", "scalar_gradient_terms", "stable_images", "well_posed_batch"]

BATCH = 6

#: How many times the float32 rounding error must fit into a pooling window's
#: margin (see :func:`stable_images`).
POOL_MARGIN = 10.0

#: How many times float64's estimated error on an SCS element's gradient must fit into
#: the float64 gradient tolerance (see :func:`resolvable_images`).
COSINE_MARGIN = 4.0

#: :func:`well_posed_batch`: rounds of redrawing a batch's unstable images, per weight draw,
#: and weight draws, before giving up.
MAX_ROUNDS = 40
MAX_MODELS = 5

#: Range the Scale gains are redrawn from (they start at 10), signs included.
SCALE_RANGE = (0.5, 15.0)


@functools.partial(jax.jit, static_argnums=(0, 4))
def _jax_loss_and_grads(graphdef, state, images, labels, label_smoothing):
    def loss_fn(state):
        logits = nnx.merge(graphdef, state)(images)
        return smoothed_cross_entropy(logits, labels, label_smoothing).mean(), logits

    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state)
    return loss, logits, grads


def build_pair(architecture, dtype, rng, with_jax=True, p_range=P_PARAM_RANGE, perturb_gains=True):
    """torch model with perturbed p/q and gains, and the JAX model with its weights
    (call inside jax_precision). ``p_range``: the range ``p_param`` is drawn from;
    ``perturb_gains=False`` leaves the Scale gains at their initial values."""
    torch.manual_seed(int(rng.integers(2**31)))
    torch_model = build_torch_model(architecture, dtype=TORCH_DTYPES[dtype])
    with torch.no_grad():
        for layer in torch_model.modules():
            if isinstance(layer, SharpenedCosineSimilarity2d):
                layer.p.copy_(torch.from_numpy(rng.uniform(*p_range, layer.p.shape)))
                layer.q.copy_(torch.from_numpy(rng.uniform(*Q_PARAM_RANGE, 1)))
            elif isinstance(layer, Scale) and perturb_gains:
                gain = rng.uniform(*SCALE_RANGE, 1) * rng.choice([-1.0, 1.0])
                layer.weight.copy_(torch.from_numpy(gain))
    if not with_jax:
        return torch_model, None
    return torch_model, torch_to_jax(torch_model, _jax_model(architecture, dtype))


@functools.cache
def _jax_model(architecture, dtype):
    """One JAX build per architecture and dtype (its eager initialisation costs seconds of
    XLA compiles); every test overwrites all of its parameters from torch."""
    return build_jax_model(architecture, rngs=nnx.Rngs(0), param_dtype=jnp.dtype(dtype))


def torch_loss_and_grads(model, images, labels, label_smoothing=0.0):
    """(loss, logits, {torch parameter name: gradient}) of a torch build, numpy."""
    logits = model(torch.from_numpy(images).to(next(model.parameters()).dtype))
    loss = F.cross_entropy(logits, torch.from_numpy(labels), label_smoothing=label_smoothing)
    names, params = zip(*model.named_parameters())
    grads = torch.autograd.grad(loss, params)
    return loss.item(), logits.detach().numpy(), {n: g.numpy() for n, g in zip(names, grads)}


def _torch_named(tree, prefix=()):
    """Flatten an NNX pure-dict of gradients into torch's names and layouts."""
    for key, value in tree.items():
        path = prefix if key == "layers" else (*prefix, str(key))
        if isinstance(value, dict):
            yield from _torch_named(value, path)
            continue
        value = np.asarray(value)
        if key == "kernel":  # convolution (kH, kW, I, O) or Linear (in, out)
            path = (*prefix, "weight")
            value = kernel_to_weight(value) if value.ndim == 4 else value.T
        yield ".".join(path), value


def jax_loss_and_grads(model, images, labels, dtype, label_smoothing=0.0):
    """(loss, logits, gradients) of a JAX build on NCHW numpy ``images``, in torch's names
    ("<index>.weight", "<index>.body.<index>.p", ...) and layouts, transposed here rather
    than through the converters under test."""
    graphdef, state = nnx.split(model)
    loss, logits, grads = _jax_loss_and_grads(
        graphdef, state, jnp.asarray(images.transpose(0, 2, 3, 1), dtype), jnp.asarray(labels),
        float(label_smoothing),
    )
    assert logits.dtype == jnp.dtype(dtype) and loss.dtype == jnp.dtype(dtype)
    return float(loss), np.asarray(logits), dict(_torch_named(nnx.to_pure_dict(grads)))


def check_network(architecture, dtype, images, labels, rng, label, label_smoothing=0.0,
                  p_range=P_PARAM_RANGE, torch_native=False, perturb_gains=True):
    """Both builds on the same weights and batch: logits, loss and every gradient at the
    layer tolerances (float32 with :func:`check_float32`'s fallback; ``torch_native``:
    torch's float32 error there is the larger of oneDNN's and its own convolutions', as
    in the layer grid; gains and q, sums that cancel, with :func:`_check_direct_then_sum`'s
    fallback, float32 gains by :func:`_check_sum` alone). Returns torch's (loss, gradients)."""
    tol = TOLERANCES[dtype]
    with jax_precision(dtype):
        torch_model, jax_model = build_pair(architecture, dtype, rng, p_range=p_range,
                                            perturb_gains=perturb_gains)
        loss_t, logits_t, grads_t = torch_loss_and_grads(torch_model, images, labels, label_smoothing)
        loss_j, logits_j, grads_j = jax_loss_and_grads(jax_model, images, labels, dtype, label_smoothing)
    assert sorted(grads_j) == sorted(grads_t), "the two builds name different parameters"
    quantities = [("logits", logits_j, logits_t, "output"), ("loss", loss_j, loss_t, "output")]
    quantities += [(f"d/d[{name}]", grads_j[name], grads_t[name], "grad") for name in grads_t]

    @functools.cache
    def truth():
        """The float64 run of the same torch network on the same numbers (the images
        rounded to the dtype), and each gain's and q's sum of |terms|
        (:func:`scalar_gradient_terms`)."""
        model = build_torch_model(architecture, dtype=torch.float64)
        model.load_state_dict({k: v.double() for k, v in torch_model.state_dict().items()})
        inputs = images.astype(dtype).astype(np.float64)
        with scalar_gradient_terms(model) as terms:
            loss, logits, grads = torch_loss_and_grads(model, inputs, labels, label_smoothing)
        return {"logits": logits, "loss": loss, **{f"d/d[{n}]": g for n, g in grads.items()},
                "terms": {k: float(t.abs().sum()) for k, t in terms.items()}}

    @functools.cache
    def native():
        """torch's float32 run with its own convolution kernels instead of oneDNN."""
        with torch_native_convolutions():
            loss, logits, grads = torch_loss_and_grads(torch_model, images, labels, label_smoothing)
        return {"logits": logits, "loss": loss, **{f"d/d[{n}]": g for n, g in grads.items()}}

    modules = dict(torch_model.named_modules())
    gains = {f"d/d[{n}.weight]" for n, m in modules.items() if isinstance(m, Scale)}
    floors = {f"d/d[{n}.q]" for n, m in modules.items() if isinstance(m, SharpenedCosineSimilarity2d)}
    for name, actual, expected, kind in quantities:
        what = f"{label} {name}"
        if dtype == "float32" and name in gains:
            _check_sum(actual, expected, truth()[name], truth()["terms"][name], tol[kind], what)
            continue
        if dtype == "float32":
            direct = functools.partial(  # called within this iteration: the lambdas see its name
                check_float32, actual, expected, tol[kind], what, lambda: truth()[name], kind=kind,
                torch_native=(lambda: native()[name]) if torch_native else None)
        else:
            direct = functools.partial(assert_close, actual, expected, tol[kind], what, kind=kind, dtype=dtype)
        if name in gains | floors:
            _check_direct_then_sum(direct, actual, expected, tol[kind], what, truth, name)
        else:
            direct()
    return loss_t, grads_t


@contextlib.contextmanager
def scalar_gradient_terms(model):
    """Collects, during a backward pass of ``model``, the terms ``g · ∂y/∂θ`` (one per
    element of the module's output ``y``, ``g`` the loss gradient of ``y``) whose sum is
    the gradient of each Scale gain and each SCS layer's q, as
    ``{"d/d[<name>]": tensor shaped like y}``. For a gain ``∂y/∂θ`` is its input; for q,
    a forward-mode derivative (``torch.func.jvp``) of the layer's call, pool fused as run.
    """
    terms, handles, busy = {}, [], []

    def record(key, derivative):
        return lambda g: terms.__setitem__(key, (derivative * g).detach())

    def gain_hook(module, args, output, key):
        output.register_hook(record(key, args[0].detach()))

    def floor_hook(module, args, kwargs, output, key):
        if busy:  # the layer's call in the jvp below runs this hook again
            return
        args, q = tuple(a.detach() for a in args), module.q.detach()
        busy.append(key)
        try:
            _, derivative = torch.func.jvp(
                lambda q: torch.func.functional_call(module, {"q": q}, args, kwargs),
                (q,), (torch.ones_like(q),))
        finally:
            busy.clear()
        output.register_hook(record(key, derivative))

    for name, module in model.named_modules():
        if isinstance(module, Scale):
            hook = functools.partial(gain_hook, key=f"d/d[{name}.weight]")
            handles.append(module.register_forward_hook(hook))
        elif isinstance(module, SharpenedCosineSimilarity2d):
            hook = functools.partial(floor_hook, key=f"d/d[{name}.q]")
            handles.append(module.register_forward_hook(hook, with_kwargs=True))
    try:
        yield terms
    finally:
        for handle in handles:
            handle.remove()


def _check_sum(actual, expected, truth, term_magnitudes, tol, what):
    """A scalar's gradient, a sum ``Σ g·∂y/∂θ`` over every element of a module's output:
    JAX and torch within ``tol`` of each other *relative to the sum of the terms'
    magnitudes*.

    The sum cancels (measured: a gain's float64 value 1e-6 of the largest gradient, torch
    float32 1.5e-2 from it, relative; q's values down to 1e-5 of the sum of their terms'
    magnitudes; in float64, a gain's value 1.2e-7 of its terms' magnitudes), so its
    relative error measures the cancellation, not the implementation;
    ``|Σ a_i - Σ b_i| / Σ|a_i|`` is the error measure of a floating-point sum (Higham,
    "Accuracy and Stability of Numerical Algorithms", 2002, section 4.2). Both are also
    checked against float64 (``truth``) so.
    """
    scale = max(term_magnitudes, np.finfo(np.float64).tiny)
    for other, name in ((expected, "torch"), (truth, "float64")):
        error = float(np.max(np.abs(to_numpy(actual) - to_numpy(other)))) / scale
        assert error <= tol, (f"{what}: JAX vs {name}: |difference| / Σ|terms| = {error:.3e} > "
                              f"{tol:.0e} (Σ|terms| = {scale:.3e})")


def _check_direct_then_sum(direct, actual, expected, tol, what, truth, name):
    """A gain's or an SCS layer's q gradient (``name``): the ``direct`` check first; where
    it fails, the sum's error measure of :func:`_check_sum`, counted in ``ILL_CONDITIONED``.

    These gradients sum the whole output's terms, and in a network the terms can cancel
    far below their magnitudes. float32 (unit roundoff 6e-8): the reference CIFAR-10
    net's d/d[0.q] on one draw was 8.5e-8 (float64) from terms summing to 7.6e-3 in
    magnitude, resolved only to ~1e-3, and JAX's error was 3.6 times torch's there.
    float64 (unit roundoff 1.1e-16): gallery_2764's d/d[4.weight] (a gain) on one draw of
    ten was 1.5e-6 from terms summing to 17.8 (cancellation 1.2e7, so ~1.3e-9 relative is
    all float64 promises), and JAX and torch differed by 1.1e-10 of it; compact_2000's
    d/d[4.weight] on another, by 2.6e-10.
    """
    try:
        direct()
    except AssertionError as failure:
        try:
            _check_sum(actual, expected, truth()[name], truth()["terms"][name], tol, what)
        except AssertionError as sum_failure:
            raise AssertionError(f"{failure}\n{sum_failure}") from None
        ILL_CONDITIONED[what] = ILL_CONDITIONED.get(what, 0) + 1


def check_parameter_count(architecture, count: int) -> None:
    """The spec's count, torch's parameters and JAX's state all hold ``count`` scalars (and
    nothing besides parameters lives in the JAX state)."""
    torch_model = build_torch_model(architecture)
    jax_model = build_jax_model(architecture, rngs=nnx.Rngs(0))
    assert architecture.parameter_count() == count
    assert sum(p.numel() for p in torch_model.parameters()) == count
    assert sum(leaf.size for leaf in jax.tree_util.tree_leaves(nnx.state(jax_model, nnx.Param))) == count
    assert sum(leaf.size for leaf in jax.tree_util.tree_leaves(nnx.state(jax_model))) == count


def random_batch(architecture, rng):
    """``BATCH`` images uniform in [0, 1) (NCHW float64) and random labels."""
    images = rng.random((BATCH, *architecture.input_shape))
    labels = rng.integers(0, architecture.num_classes, BATCH)
    return images, labels


def _window_gaps_ok(pool, x64, x32) -> np.ndarray:
    """Per image (shape (N,), bool): whether each window of ``pool`` on ``x64`` has its two
    largest magnitudes apart by more than ``POOL_MARGIN`` times the float32 error
    ``|x32 - x64|`` on them."""
    (kh, kw), (sh, sw) = pool.kernel_size, pool.stride
    h_out, w_out = pool(x64).shape[2:]
    a = x64.abs().numpy()
    err = np.maximum(np.abs(x32.double().numpy() - x64.numpy()), np.spacing(np.float32(a)))
    n, c, h, w = a.shape
    padded = np.full((2, n, c, h + kh, w + kw), -1.0)  # -1: never among the top two
    padded[0, :, :, :h, :w], padded[1, :, :, :h, :w] = a, err
    windows = np.lib.stride_tricks.sliding_window_view(padded, (kh, kw), axis=(3, 4))
    windows = windows[:, :, :, : h_out * sh : sh, : w_out * sw : sw].reshape(2, n, -1, kh * kw)
    order = np.argsort(windows[0], axis=-1)[..., -2:]
    top = np.take_along_axis(windows[0], order, -1)
    top_err = np.take_along_axis(windows[1], order, -1)
    single = top[..., 0] < 0  # a one-element (partial) window
    margin = top[..., 1] - top[..., 0] - POOL_MARGIN * top_err.sum(-1)
    return ~np.any((margin <= 0) & ~single, axis=-1)


def _stable_chain(chain64, chain32, x64, x32):
    """Runs two copies of a chain layer by layer (pools unfused, into Residual branches);
    returns (per image: every pool stable, output64, output32)."""
    stable = np.ones(x64.shape[0], dtype=bool)
    for layer64, layer32 in zip(chain64, chain32):
        if isinstance(layer64, Residual):
            body_ok, b64, b32 = _stable_chain(layer64.body, layer32.body, x64, x32)
            short_ok, s64, s32 = _stable_chain(layer64.shortcut, layer32.shortcut, x64, x32)
            stable &= body_ok & short_ok
            x64, x32 = b64 + s64, b32 + s32
            continue
        if isinstance(layer64, MaxAbsPool2d):
            stable &= _window_gaps_ok(layer64, x64, x32)
        x64, x32 = layer64(x64), layer32(x32)
    return stable, x64, x32


def stable_images(architecture, torch_model, images):
    """Per image of the batch (shape (N,), bool): whether every MaxAbsPool choice survives
    float32 rounding, with a margin.

    MaxAbsPool picks one element per window, a discontinuous choice: where
    the two largest magnitudes differ by less than the frameworks' rounding
    differences, torch and JAX may legitimately pick different elements and
    route the gradient elsewhere (measured: a gap of 1.8e-7 relative in
    CIFAR-10's first pool flipped between processes and moved
    d/d[0.weight] by 7e-3). For each window the gap |x|₁ - |x|₂ of the
    float64 forward must exceed ``POOL_MARGIN`` times the float32 forward's
    actual error on those two elements (at least one float32 ulp each), this
    batch run as one. Exact ties are tested in test_pool_parity. Runs torch only.
    """
    model, model32 = _float64_and_float32(architecture, torch_model)
    with torch.no_grad():
        stable, _, _ = _stable_chain(model, model32, torch.from_numpy(images),
                                     torch.from_numpy(images).float())
    return stable


def resolvable_images(architecture, torch_model, images):
    """Per image of the batch (shape (N,), bool): whether float64 resolves the gradient
    through every SCS element to the float64 gradient tolerance, with a margin.

    For an exponent ``e < 1`` the slope ``∂out/∂c = e·(|c| + eps)^(e-1)`` grows without
    bound as the cosine ``c`` nears 0, and an error ``δ`` in ``c`` moves it by
    ``(1 - e)·δ/|c|``, relative. The dot product ``s·k`` carries a rounding error of
    about ``u·Σ|s_i k_i|`` (``u = 2⁻⁵³``), so the slope's relative error is about
    ``u·(1 - e)·a/|c|`` with ``a = Σ|s_i k_i| / (‖s‖‖k‖)``; this must stay under
    ``tol / COSINE_MARGIN`` for every element the loss sees: every element of an SCS
    layer, or the ones its fused MaxAbsPool keeps. Measured: compact_1980 on one draw
    of ten (seed 1008) had |c| = 5e-7 with ``e < 1`` in depthwise layer 3, no pool
    after it; JAX and torch differed by 3.7e-10 in d/d[0.weight] (estimate 2.2e-10);
    the other nine draws' smallest |c| there was at least 2e-6. Runs torch only.
    """
    model, _ = _float64_and_float32(architecture, torch_model)
    worst = torch.zeros(len(images), dtype=torch.float64)

    def hook(module, args, kwargs, output):
        nonlocal worst
        x, pool = args[0], kwargs.get("pool")
        cosine, spread = (
            SF.sharpened_cosine_similarity(x_, w_, torch.full_like(module.p, SF.P_SCALE),
                                           torch.zeros_like(module.q), module.stride,
                                           module.padding, module.groups, module.eps).abs()
            for x_, w_ in ((x, module.weight), (x.abs(), module.weight.abs())))
        exponent = (module.p / SF.P_SCALE).square().view(1, -1, 1, 1)
        condition = (1 - exponent).clamp(min=0) * spread / cosine  # |c| + eps: finite
        if pool is not None:  # only the elements the pool keeps carry a gradient
            y = SF.sharpened_cosine_similarity(x, module.weight, module.p, module.q, module.stride,
                                               module.padding, module.groups, module.eps)
            _, kept = F.max_pool2d(y.abs(), pool.kernel_size, pool.stride, 0, 1, pool.ceil_mode,
                                   return_indices=True)
            condition = condition.flatten(2).gather(2, kept.flatten(2))
        worst = torch.maximum(worst, condition.flatten(1).amax(1))

    handles = [m.register_forward_hook(hook, with_kwargs=True) for m in model.modules()
               if isinstance(m, SharpenedCosineSimilarity2d)]
    try:
        with torch.no_grad():
            model(torch.from_numpy(images))
    finally:
        for handle in handles:
            handle.remove()
    error = worst.numpy() * np.finfo(np.float64).eps / 2
    return error <= TOLERANCES["float64"]["grad"] / COSINE_MARGIN


@functools.lru_cache(maxsize=1)
def _float64_and_float32(architecture, torch_model):
    """float64 and float32 copies of ``torch_model``, built once per weight draw (the batch
    search checks many image sets against the same weights). Cached by the model object:
    after changing a model's parameters, pass a copy."""
    state = torch_model.state_dict()
    model = build_torch_model(architecture, dtype=torch.float64)
    model.load_state_dict({k: v.double() for k, v in state.items()})
    model32 = build_torch_model(architecture, dtype=torch.float32)
    model32.load_state_dict({k: v.float() for k, v in state.items()})
    return model, model32


def well_posed_batch(architecture, dtype, rng, p_range=P_PARAM_RANGE, perturb_gains=True):
    """A random batch the dtype resolves, and ``rng`` set to build the twin models.

    Draws a batch, then the torch model's weights; redraws only the images that the
    dtype's guard rejects (float32: :func:`stable_images`, a pooling near-tie; float64:
    :func:`resolvable_images`, a cosine near 0 under an exponent below 1) and rechecks
    the whole batch, until every image
    passes (at most ``MAX_ROUNDS`` times, then a new batch and new weights, at most
    ``MAX_MODELS`` times). Pooling acts per image, so a deep net keeps its stable images
    instead of needing all ``BATCH`` stable at once: residual_1251k on an Intel Xeon
    (AVX-512) had 1 batch in 40 stable as a whole, and its test's seeded search of
    whole batches found none in 400 draws for 2 of 3 other seeds; per image, about half
    pass. float64 rounding (~1e-16) is far below every pooling gap measured (>1e-12).
    """
    for _ in range(MAX_MODELS):
        images, labels = random_batch(architecture, rng)
        state = rng.bit_generator.state
        torch_model, _ = build_pair(architecture, dtype, rng, with_jax=False, p_range=p_range,
                                    perturb_gains=perturb_gains)
        for _ in range(MAX_ROUNDS):
            guard = resolvable_images if dtype == "float64" else stable_images
            stable = guard(architecture, torch_model, images)
            if np.all(stable):
                rng.bit_generator.state = state  # check_network draws these weights again
                return images, labels
            images[~stable] = rng.random((int(np.sum(~stable)), *architecture.input_shape))
    raise AssertionError(f"no {dtype} batch its guard accepts in {MAX_ROUNDS} rounds of image "
                         f"redraws for each of {MAX_MODELS} weight draws")

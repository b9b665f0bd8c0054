"""Running one SCS layer in both frameworks and comparing every quantity.

float64 in JAX: tests run float64 code inside ``jax.enable_x64(True)`` (a
context manager, see :func:`jax_precision`), never a global
``jax.config.update("jax_enable_x64", True)``. Two reasons: other test files
assert that x64 is off and rely on JAX's float32 defaults, and float32 parity
must be measured with JAX's real float32 defaults (a global x64 flag would let
a forgotten dtype silently promote a "float32" case to float64 and make it
pass for the wrong reason). ``enable_x64`` is a thread-local config state that
is restored on exit, so nothing leaks.

The comparisons (:func:`assert_close`, :func:`check_float32`) file their worst
errors in :data:`WORST` and the quantities compared by accuracy in
:data:`ILL_CONDITIONED`; ``conftest.py`` prints both at the end of a session.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx

import scs_jax
import scs_torch
from scs_jax import convert as jax_convert
from scs_torch import convert as torch_convert

#: Relative tolerances (see :func:`assert_close`); never loosened per case.
TOLERANCES = {
    "float64": {"output": 1e-10, "grad": 1e-10},
    "float32": {"output": 1e-5, "grad": 1e-4},
}
DTYPES = ("float32", "float64")

#: Range of the perturbed ``p_param`` (exponent ``(p_param / 10)²``, 0.25 to
#: 4), both precisions. Below exponent 1 the map cos -> sign(cos)|cos|^p is
#: only Hölder at cos = 0 and its derivative p|cos|^(p-1) is unbounded, so in
#: float32 the ~1e-8 rounding difference of the two frameworks' convolutions
#: is amplified where a cosine lands near 0 (measured on whole networks: 5 of
#: 24 random float32 draws beyond 1e-4 in some gradient, up to 3.9e-3, with
#: torch float32 itself 3e-3 from its float64 value there; cos = 2.5e-5 at
#: p = 0.33 moves an output by 1e-5). Those quantities go through
#: :func:`check_float32`'s accuracy comparison; with exponents >= 1 none did.
P_PARAM_RANGE = (5.0, 20.0)
Q_PARAM_RANGE = (3.0, 30.0)
TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: The device :func:`torch_scs_run` computes on: ``$PARITY_TORCH_DEVICE``, default
#: ``cpu``; ``benchmarks/device_check.py`` sets ``cuda`` on a GPU, so that the layer
#: comparisons run torch's CUDA kernels against JAX on the GPU.
TORCH_DEVICE = os.environ.get("PARITY_TORCH_DEVICE", "cpu")
_TINY = np.finfo(np.float64).tiny

#: Worst measured relative error per (dtype, kind), filled by every
#: :func:`assert_close` call and printed at the end of the session.
WORST: dict[tuple[str, str], tuple[float, str]] = {}


def jax_precision(dtype: str):
    """Context in which JAX computes in ``dtype`` ("float32" or "float64")."""
    if dtype == "float64":
        return jax.enable_x64(True)
    if dtype == "float32":
        return contextlib.nullcontext()
    raise ValueError(f"dtype: expected 'float32' or 'float64', got {dtype!r}")


def to_numpy(value) -> np.ndarray:
    """A torch tensor or JAX/numpy array as a float64 numpy array (a copy)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.array(value, dtype=np.float64)


def relative_error(actual, expected) -> float:
    """``max|a - e| / max(max|e|, tiny)`` over all entries (inf when shapes differ)."""
    a, e = to_numpy(actual), to_numpy(expected)
    if a.shape != e.shape:
        return float("inf")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - e)) / max(float(np.max(np.abs(e))), _TINY))


def assert_close(actual, expected, rtol: float, what: str, *, kind: str | None = None, dtype: str | None = None):
    """Fail unless ``relative_error(actual, expected) <= rtol``, naming ``what`` and the error.

    Both must be finite with equal shapes (use :func:`assert_close_nonfinite`
    where inf/NaN are expected). ``kind``/``dtype`` file the measured error in
    :data:`WORST` for the session summary.
    """
    a, e = to_numpy(actual), to_numpy(expected)
    assert a.shape == e.shape, f"{what}: shape {a.shape} != expected {e.shape}"
    assert np.all(np.isfinite(e)), f"{what}: expected values are not all finite"
    assert np.all(np.isfinite(a)), f"{what}: {int(np.sum(~np.isfinite(a)))} non-finite values (expected finite)"
    err = relative_error(a, e)
    if kind is not None and dtype is not None and err <= rtol:
        key = (dtype, kind)
        if err > WORST.get(key, (-1.0, ""))[0]:
            WORST[key] = (err, what)
    assert err <= rtol, f"{what}: relative error {err:.3e} > {rtol:.0e} (max|expected| = {np.max(np.abs(e)) if e.size else 0:.3e})"


def assert_close_nonfinite(actual, expected, rtol: float, what: str, **kw):
    """Like :func:`assert_close`, but inf/NaN are allowed when their positions (and inf signs) agree."""
    a, e = to_numpy(actual), to_numpy(expected)
    assert a.shape == e.shape, f"{what}: shape {a.shape} != expected {e.shape}"
    nan_a, nan_e = np.isnan(a), np.isnan(e)
    assert np.array_equal(nan_a, nan_e), (
        f"{what}: NaN positions differ ({int(nan_a.sum())} vs expected {int(nan_e.sum())}, "
        f"{int((nan_a != nan_e).sum())} mismatched)"
    )
    inf_a, inf_e = np.isinf(a), np.isinf(e)
    assert np.array_equal(inf_a, inf_e) and np.array_equal(a[inf_a], e[inf_e]), f"{what}: inf positions or signs differ"
    finite = np.isfinite(e)
    assert_close(a[finite], e[finite], rtol, what, **kw)


def nchw_to_nhwc(x):
    """``(N, C, H, W)`` -> ``(N, H, W, C)`` (numpy, torch or JAX array)."""
    if isinstance(x, torch.Tensor):
        return x.permute(0, 2, 3, 1)
    return x.transpose(0, 2, 3, 1)


def nhwc_to_nchw(x):
    """``(N, H, W, C)`` -> ``(N, C, H, W)`` (numpy, torch or JAX array)."""
    if isinstance(x, torch.Tensor):
        return x.permute(0, 3, 1, 2)
    return x.transpose(0, 3, 1, 2)


def kernel_to_weight(kernel):
    """JAX ``(kH, kW, I, O)`` -> torch ``(O, I, kH, kW)``."""
    return kernel.transpose(3, 2, 0, 1)


def make_torch_scs(rng, dtype, in_channels, out_channels, kernel_size, stride=1, padding=0,
                   groups=1, perturb=True):
    """A torch SCS layer, weights drawn by its own init from a seed taken from ``rng``.

    With ``perturb``, ``p_param`` is redrawn uniform in ``P_PARAM_RANGE`` ([5, 20])
    and ``q_param`` in [3, 30], so the gradients wrt p and q are not those of
    the initial point.
    """
    torch.manual_seed(int(rng.integers(2**31)))
    layer = scs_torch.SharpenedCosineSimilarity2d(
        in_channels, out_channels, kernel_size, stride, padding, groups, dtype=TORCH_DTYPES[dtype]
    )
    if perturb:
        with torch.no_grad():
            layer.p.copy_(torch.from_numpy(rng.uniform(*P_PARAM_RANGE, out_channels)))
            layer.q.copy_(torch.from_numpy(rng.uniform(*Q_PARAM_RANGE, 1)))
    return layer


def jax_twin(torch_layer, dtype):
    """The JAX layer with ``torch_layer``'s configuration and parameters (call inside :func:`jax_precision`)."""
    layer = scs_jax.SharpenedCosineSimilarity(
        torch_layer.in_channels, torch_layer.out_channels, torch_layer.kernel_size,
        stride=torch_layer.stride, padding=torch_layer.padding,
        feature_group_count=torch_layer.groups, param_dtype=jnp.dtype(dtype), rngs=nnx.Rngs(0),
    )
    return jax_convert.from_numpy(layer, torch_convert.to_numpy(torch_layer))


def torch_scs_run(layer, x, g, pool=None, *, two_step=False):
    """Output and gradients (upstream ``g``) of a torch SCS layer, numpy NCHW / torch layout.

    ``pool``: ``(kernel_size, stride, ceil_mode)`` of a MaxAbsPool fused into
    the layer's call (``layer(x, pool=...)``), or ``None``; ``two_step``: that
    pool applied to the layer's output instead. Computed on
    :data:`TORCH_DEVICE` (a copy of ``layer`` moved there).
    """
    dtype, device = layer.weight.dtype, torch.device(TORCH_DEVICE)
    if layer.weight.device != device:  # a copy: the caller's layer stays where it is
        layer = copy.deepcopy(layer).to(device)
    xt = torch.tensor(x, dtype=dtype, device=device, requires_grad=True)
    if pool is None:
        out = layer(xt)
    elif two_step:
        out = scs_torch.MaxAbsPool2d(*pool)(layer(xt))
    else:
        out = layer(xt, pool=scs_torch.MaxAbsPool2d(*pool))
    params = [layer.weight, layer.p, layer.q]
    grads = torch.autograd.grad(out, [xt, *params], torch.tensor(g, dtype=dtype, device=device))
    names = ("x", "weight", "p", "q")
    return {"out": out.detach().cpu().numpy(), **{n: gr.cpu().numpy() for n, gr in zip(names, grads)}}


@functools.partial(jax.jit, static_argnums=(0, 4))
def _jax_vjp(graphdef, state, x, g, pool=None):
    def forward(state, x):
        module = nnx.merge(graphdef, state)
        return module(x) if pool is None else module(x, pool=scs_jax.MaxAbsPool(*pool))

    out, vjp = jax.vjp(forward, state, x)
    return (out, *vjp(g))


def jax_vjp(module, x, g, pool=None):
    """``(output, state gradients, input gradient)`` of an NNX module for upstream ``g`` (NHWC).

    ``pool``: as for :func:`torch_scs_run` (SCS layers only).

    One ``jax.jit`` per graph structure and shapes, cached for the session:
    XLA's per-shape compile is the suite's main cost (eager dispatch compiles
    every primitive separately and is several times slower), so cases share
    shapes where they can.
    """
    graphdef, state = nnx.split(module)
    out, g_state, g_x = _jax_vjp(graphdef, state, x, g, pool)
    return out, nnx.to_pure_dict(g_state), g_x


def jax_scs_run(layer, x, g, pool=None):
    """Output and gradients of a JAX SCS layer, converted to torch layouts (NCHW, (O, I, kH, kW)).

    ``x`` and ``g`` are NCHW numpy arrays; ``pool`` as for :func:`torch_scs_run`.
    """
    dtype = layer.kernel[...].dtype
    xj = jnp.asarray(nchw_to_nhwc(x), dtype=dtype)
    out, g_state, g_x = jax_vjp(layer, xj, jnp.asarray(nchw_to_nhwc(g), dtype=dtype), pool)
    assert out.dtype == dtype, f"JAX output dtype {out.dtype}, expected {dtype}"
    return {
        "out": nhwc_to_nchw(np.asarray(out)),
        "x": nhwc_to_nchw(np.asarray(g_x)),
        "weight": kernel_to_weight(np.asarray(g_state["kernel"])),
        "p": np.asarray(g_state["p"]),
        "q": np.asarray(g_state["q"]),
    }


def flush_subnormals(results: dict, dtype: str) -> dict:
    """Subnormal values set to 0, as XLA:CPU computes (flush-to-zero and denormals-are-zero).

    torch keeps subnormals, XLA:CPU flushes them, so a result below the
    smallest normal number (1.2e-38 in float32) is 0 in JAX and e.g. 8.5e-40
    in torch (measured: d/dweight of a 1x1 kernel on 1e-30 inputs). Such a
    value has lost its relative precision anyway (1.4e-45 holds one bit in
    float32); it is compared as 0. Flushed intermediates inside XLA are not
    undone by this; none has mattered in the draws so far.
    """
    tiny = np.finfo(dtype).tiny
    return {k: np.where(np.abs(v) < tiny, 0.0, v) for k, v in results.items()}


def output_shape(torch_layer, x_shape, pool=None):
    """NCHW output shape of ``torch_layer`` on ``x_shape``, after ``pool`` (as for :func:`torch_scs_run`)."""
    (pt, pb), (pl, pr) = torch_layer.padding
    kh, kw = torch_layer.kernel_size
    sh, sw = torch_layer.stride
    n, _, h, w = x_shape
    h, w = (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1
    if pool is not None:
        kernel, stride, ceil_mode = pool
        (ph, pw), (qh, qw) = (scs_torch.shapes.pair(name, v) for name, v in (("kernel", kernel), ("stride", stride)))
        h = scs_torch.shapes.pool_output_size(h, ph, qh, ceil_mode)
        w = scs_torch.shapes.pool_output_size(w, pw, qw, ceil_mode)
    return (n, torch_layer.out_channels, h, w)


#: Quantities compared by accuracy instead of directly (label -> count): float32 ones
#: (:func:`check_float32`) and the sums that cancel in whole networks, either dtype
#: (``helpers.networks._check_direct_then_sum``).
ILL_CONDITIONED: dict[str, int] = {}


@contextlib.contextmanager
def torch_native_convolutions():
    """torch's own convolution kernels instead of oneDNN (CPU) and cuDNN (GPU).

    The same maths in another summation order: a second float32
    implementation from torch itself, for :func:`check_float32`. TF32 stays off.
    """
    with torch.backends.mkldnn.flags(enabled=False, allow_tf32=False), \
            torch.backends.cudnn.flags(enabled=False, allow_tf32=False):
        yield


def check_float32(actual, expected, tol: float, what: str, truth, *, kind: str, nonfinite=False,
                  torch_native=None):
    """The float32 comparison: ``actual`` (JAX) vs ``expected`` (torch) at ``tol``, with one fallback.

    If the direct comparison fails, ``truth()`` gives the float64 result of
    the same torch computation on the same (float32) numbers, and
    ``torch_native()`` (when given) torch's float32 result computed with its
    own convolution kernels (:func:`torch_native_convolutions`). torch's
    float32 error is the larger of its two implementations' errors against
    the truth: one summation order can be lucky on a quantity whose value
    cancels (the convolution's sum near cos = 0, amplified by an exponent
    p < 1 in the gradients; the d/dq sum), the other not (measured: d/dx of
    one drawn layer 3.8e-5 from float64 with oneDNN, 6.2e-4 with torch's own
    kernels, JAX 2.2e-4). When that error exceeds ``tol / 4`` (but stays below
    1 %: float32 still approximates the value, unlike an overflow), float32 as
    implemented cannot resolve the quantity to ``tol``, so two float32
    implementations cannot be held to ``tol`` against each other; JAX must
    then be as accurate as torch: its own error at most twice torch's plus
    ``tol / 2``. Otherwise the failure stands. Quantities passed this way are
    counted in :data:`ILL_CONDITIONED` and listed in the session summary.
    """
    check = assert_close_nonfinite if nonfinite else assert_close
    try:
        check(actual, expected, tol, what, kind=kind, dtype="float32")
        return
    except AssertionError as failure:
        reference = truth()
        errors = {"torch": finite_error(expected, reference)}
        if torch_native is not None:
            errors["torch native conv"] = finite_error(torch_native(), reference)
        own, theirs = max(errors.values()), finite_error(actual, reference)
        if not (tol / 4 < own <= 1e-2 and theirs <= 2 * own + tol / 2):
            measured = ", ".join(f"{name} {error:.2e}" for name, error in errors.items())
            raise AssertionError(
                f"{failure}\n(vs float64: {measured}, JAX {theirs:.2e}; not ill-conditioned)"
            ) from None
    ILL_CONDITIONED[what] = ILL_CONDITIONED.get(what, 0) + 1


def compare_scs(torch_layer, x, g, dtype, label, *, nonfinite=False, pool=None, torch_two_step=False):
    """Run both twins on ``x`` with upstream ``g`` (NCHW numpy) and assert every quantity agrees.

    float32 quantities go through :func:`check_float32`. ``pool``
    (``(kernel_size, stride, ceil_mode)``) fuses a MaxAbsPool into both
    layers' calls (``torch_two_step``: torch pools the layer's output instead,
    see :func:`torch_scs_run`). Returns the torch results (dict of numpy arrays).
    """
    run = functools.partial(torch_scs_run, two_step=torch_two_step)
    expected = flush_subnormals(run(torch_layer, x, g, pool), dtype)
    with jax_precision(dtype):
        actual = flush_subnormals(jax_scs_run(jax_twin(torch_layer, dtype), x, g, pool), dtype)
    check = assert_close_nonfinite if nonfinite else assert_close
    tol = TOLERANCES[dtype]
    truth = functools.cache(lambda: flush_subnormals(
        float64_twin_run(torch_layer, x, g, pool, two_step=torch_two_step), dtype))

    @functools.cache
    def native():
        with torch_native_convolutions():
            return flush_subnormals(run(torch_layer, x, g, pool), dtype)

    for name in ("out", "x", "weight", "p", "q"):
        kind = "output" if name == "out" else "grad"
        what = f"{label} {dtype} {'output' if name == 'out' else 'd/d' + name}"
        if dtype == "float32":
            check_float32(actual[name], expected[name], tol[kind], what, lambda: truth()[name],
                          kind=kind, nonfinite=nonfinite, torch_native=lambda: native()[name])
        else:
            check(actual[name], expected[name], tol[kind], what, kind=kind, dtype=dtype)
    return expected


def float64_twin_run(torch_layer, x, g, pool=None, *, two_step=False):
    """:func:`torch_scs_run` of a float64 copy of ``torch_layer`` on the float32-rounded ``x`` and ``g``."""
    layer = scs_torch.SharpenedCosineSimilarity2d(
        torch_layer.in_channels, torch_layer.out_channels, torch_layer.kernel_size, torch_layer.stride,
        torch_layer.padding, torch_layer.groups, dtype=torch.float64,
    )
    with torch.no_grad():
        for name, param in layer.named_parameters():
            param.copy_(getattr(torch_layer, name).double())
    return torch_scs_run(layer, np.float32(x).astype(np.float64), np.float32(g).astype(np.float64), pool,
                         two_step=two_step)


def finite_error(actual, expected):
    """:func:`relative_error` over the finite entries; inf unless both are finite at the same places."""
    finite = np.isfinite(actual) & np.isfinite(expected)
    if not np.array_equal(np.isfinite(actual), np.isfinite(expected)):
        return float("inf")
    return relative_error(actual[finite], expected[finite])

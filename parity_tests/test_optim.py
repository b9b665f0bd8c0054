"""Parity of demos.optim: torch Adam + OneCycleLR vs optax inject_hyperparams(adam).

float64 checks run JAX under ``jax.enable_x64(True)`` used as a context
manager (a fixture), so the flag is restored afterwards and does not leak
into other tests.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from demos.optim import (
    OneCycle,
    current_learning_rate_optax,
    make_optax_optimizer,
    make_torch_optimizer,
)

# (total_steps, pct_start): the brief's totals at torch's default pct_start,
# odd pct_start values (fractional phase boundaries), and tiny cycles whose
# warm-up holds no step at all (pct_start * total_steps < 1).
SCHEDULES = [
    (10, 0.3),
    (15, 0.3),
    (59 * 3, 0.3),
    (59 * 100, 0.3),
    (10, 0.25),
    (15, 0.25),
    (15, 0.37),
    (59 * 3, 0.37),
    (59 * 100, 0.37),
    (2, 0.3),
    (3, 0.3),
]

SHAPES = [(), (7,), (4, 5), (2, 3, 3, 4)]


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield
    assert not jax.config.jax_enable_x64


def torch_schedule(schedule: OneCycle) -> tuple[np.ndarray, np.ndarray]:
    """lr and beta1 in the optimizer's param group before each step."""
    w = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    optimizer, scheduler = make_torch_optimizer([w], schedule)
    lrs, b1s = [], []
    for _ in range(schedule.total_steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        b1s.append(optimizer.param_groups[0]["betas"][0])
        w.grad = torch.ones_like(w)
        optimizer.step()
        scheduler.step()
    return np.array(lrs, dtype=np.float64), np.array(b1s, dtype=np.float64)


def optax_used_values(schedule: OneCycle, n_updates: int):
    """Hyperparams after init, and after each of ``n_updates`` updates."""
    tx = make_optax_optimizer(schedule)
    params = {"w": jnp.zeros(2)}
    grads = {"w": jnp.ones(2)}
    state0 = tx.init(params)

    def body(state, _):
        _, state = tx.update(grads, state, params)
        return state, (state.hyperparams["learning_rate"], state.hyperparams["b1"])

    _, (lrs, b1s) = jax.lax.scan(body, state0, length=n_updates)
    return state0, np.asarray(lrs), np.asarray(b1s)


@pytest.mark.parametrize("total_steps,pct_start", SCHEDULES)
def test_tables_equal_torch(total_steps, pct_start):
    s = OneCycle(max_lr=0.01, total_steps=total_steps, pct_start=pct_start)
    t_lr, t_b1 = torch_schedule(s)
    # Same Python-float expressions as torch: measured difference is 0.
    np.testing.assert_allclose(s.learning_rates(), t_lr, rtol=1e-12, atol=0)
    np.testing.assert_allclose(s.beta1s(), t_b1, rtol=1e-12, atol=0)
    assert s.learning_rates().dtype == np.float64
    # Torch's end points: max_lr/25 first, max_lr/25/1e4 last, beta1 0.95.
    assert s.learning_rates()[-1] == pytest.approx(0.01 / 25 / 1e4, rel=1e-12)
    assert s.beta1s()[-1] == pytest.approx(0.95, rel=1e-12)


@pytest.mark.parametrize("total_steps,pct_start", SCHEDULES)
def test_optax_uses_torch_values_every_step(x64, total_steps, pct_start):
    s = OneCycle(max_lr=0.01, total_steps=total_steps, pct_start=pct_start)
    t_lr, t_b1 = torch_schedule(s)
    state0, lrs, b1s = optax_used_values(s, total_steps)
    assert lrs.dtype == np.float64
    # inject_hyperparams evaluates the schedules at its count (0 at the first
    # update) before running Adam and stores the values it used: after update
    # k the state holds the values of torch's k-th optimizer.step().
    np.testing.assert_allclose(lrs, t_lr, rtol=1e-12, atol=0)
    np.testing.assert_allclose(b1s, t_b1, rtol=1e-12, atol=0)
    # After init the state holds step 0's values.
    assert float(state0.hyperparams["learning_rate"]) == pytest.approx(t_lr[0], rel=1e-12)
    assert float(state0.hyperparams["b1"]) == pytest.approx(t_b1[0], rel=1e-12)
    assert current_learning_rate_optax(state0) == pytest.approx(t_lr[0], rel=1e-12)


def test_optax_holds_last_value_past_total_steps(x64):
    s = OneCycle(max_lr=0.01, total_steps=10)
    _, lrs, b1s = optax_used_values(s, 13)
    np.testing.assert_array_equal(lrs[9:], s.learning_rates()[-1])
    np.testing.assert_array_equal(b1s[9:], s.beta1s()[-1])


def test_torch_raises_past_total_steps():
    # Documented: torch's scheduler refuses to go beyond total_steps + 1.
    s = OneCycle(max_lr=0.01, total_steps=4)
    w = torch.nn.Parameter(torch.zeros(1))
    optimizer, scheduler = make_torch_optimizer([w], s)
    for _ in range(s.total_steps):
        optimizer.step()
        scheduler.step()
    optimizer.step()
    with pytest.raises(ValueError, match="Tried to step"):
        scheduler.step()


# ---------------------------------------------------------------- Adam steps


def _problem(seed: int, n_steps: int):
    rng = np.random.default_rng(seed)
    params0 = [rng.standard_normal(shape) for shape in SHAPES]
    # Gradients of different scales per tensor, some exact zeros.
    grads = []
    for _ in range(n_steps):
        step = []
        for i, shape in enumerate(SHAPES):
            g = rng.standard_normal(shape) * 10.0 ** (i - 2)
            g = np.where(rng.random(shape) < 0.1, 0.0, g)
            step.append(g)
        grads.append(step)
    return params0, grads


def run_torch(schedule, params0, grads, dtype):
    tdtype = {np.float64: torch.float64, np.float32: torch.float32}[dtype]
    params = [torch.nn.Parameter(torch.tensor(p, dtype=tdtype)) for p in params0]
    optimizer, scheduler = make_torch_optimizer(params, schedule)
    history = []
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = torch.tensor(g, dtype=tdtype)
        optimizer.step()
        scheduler.step()
        history.append([p.detach().numpy().copy() for p in params])
    return history


def run_optax(schedule, params0, grads, dtype):
    tx = make_optax_optimizer(schedule)
    params = {f"p{i}": jnp.asarray(p, dtype=dtype) for i, p in enumerate(params0)}
    state = tx.init(params)

    @jax.jit
    def step(params, state, g):
        updates, state = tx.update(g, state, params)
        return optax.apply_updates(params, updates), state

    history = []
    for step_grads in grads:
        g = {f"p{i}": jnp.asarray(x, dtype=dtype) for i, x in enumerate(step_grads)}
        params, state = step(params, state, g)
        history.append([np.asarray(params[f"p{i}"]) for i in range(len(params0))])
    return history


def max_rel_diff(h_torch, h_optax):
    """Largest |torch - optax| / max(|torch|, 1) over all steps and elements.

    The parameters start as N(0, 1) draws, so 1 is their scale: this is the
    relative error for every element of magnitude >= 1 and the error relative
    to the parameter scale for the few that pass near 0. A purely elementwise
    relative error is not meaningful there: when p + update cancels to
    nearly 0, one rounding of p (an ulp of |p| ~ 1) becomes a large fraction
    of the result. Measured over 40 seeds x 2 pct_start in float64: plain
    elementwise relative error up to 3.1e-12, all of it at such elements;
    this measure at most 4.2e-16 (2 float64 ulps of 1).
    """
    worst = 0.0
    for a_step, b_step in zip(h_torch, h_optax):
        for a, b in zip(a_step, b_step):
            a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
            err = np.abs(a64 - b64) / np.maximum(np.abs(a64), 1.0)
            worst = max(worst, float(np.max(err)))
    return worst


def test_one_adam_step_float64(x64):
    s = OneCycle(max_lr=0.05, total_steps=20)
    params0, grads = _problem(seed=0, n_steps=1)
    h_t = run_torch(s, params0, grads, np.float64)
    h_o = run_optax(s, params0, grads, np.float64)
    for a, b in zip(h_t[0], h_o[0]):
        assert b.dtype == np.float64 and b.shape == a.shape
    assert max_rel_diff(h_t, h_o) < 1e-12
    # The step moved exactly the elements with a nonzero gradient, each by
    # about lr (Adam's first step is lr * g / (|g| + eps)).
    lr0 = s.learning_rates()[0]
    for a, p, g in zip(h_t[0], params0, grads[0]):
        moved = np.abs(a - p)
        assert np.all((moved > 0.5 * lr0) == (g != 0))
        assert np.all(moved < 1.000001 * lr0)


@pytest.mark.parametrize("pct_start", [0.3, 0.37])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_twenty_adam_steps_float64(x64, seed, pct_start):
    # 20 steps = the whole cycle, so beta1 runs 0.95 -> 0.85 -> 0.95 and the
    # bias correction 1 - beta1**t sees every cycled value.
    s = OneCycle(max_lr=0.05, total_steps=20, pct_start=pct_start)
    params0, grads = _problem(seed=seed, n_steps=20)
    h_t = run_torch(s, params0, grads, np.float64)
    h_o = run_optax(s, params0, grads, np.float64)
    assert all(b.dtype == np.float64 for b in h_o[-1])
    # max_rel_diff looks at every one of the 20 steps, not just the last.
    assert max_rel_diff(h_t, h_o) < 1e-12


# Measured float32 drift, max_rel_diff over the 20 steps (torch 2.13 CPU,
# jax 0.10.2 CPU): 3.6e-07 for the seeds below, 4.8e-07 worst over seeds
# 0..39 x pct_start 0.3 / 0.37, i.e. 3-4 float32 ulps of 1 (eps = 1.19e-07).
# The arithmetic differs by design: torch keeps lr, beta1 and the bias
# corrections 1 - beta1**t in Python float64 and rounds lr / (1 - beta1**t)
# once, optax computes them in float32 from float32-rounded lr and b1; torch
# uses exp_avg.lerp_, sqrt(v) / sqrt(1 - b2**t) and addcdiv_ where optax
# uses b1*m + (1-b1)*g, sqrt(v / (1 - b2**t)) and a separate multiply-add.
# Tolerance 2e-6 (~17 ulps) is about 4x the worst measured drift, for other
# CPUs' vectorisation/FMA choices; wrong schedules (one step off, beta1 not
# cycled, optax.cosine_onecycle_schedule) measure 2.7e-2 or more here, four
# orders of magnitude above it (test_float32_tolerance_detects_wrong_schedules).
FLOAT32_RTOL = 2e-6


@pytest.mark.parametrize("pct_start", [0.3, 0.37])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_twenty_adam_steps_float32(seed, pct_start):
    assert not jax.config.jax_enable_x64  # x64 did not leak from other tests
    s = OneCycle(max_lr=0.05, total_steps=20, pct_start=pct_start)
    params0, grads = _problem(seed=seed, n_steps=20)
    h_t = run_torch(s, params0, grads, np.float32)
    h_o = run_optax(s, params0, grads, np.float32)
    assert all(b.dtype == np.float32 for b in h_o[-1])
    assert max_rel_diff(h_t, h_o) < FLOAT32_RTOL


@pytest.mark.parametrize(
    "mutate",
    [
        # Guards: the float32 check fails for a schedule one step off, for
        # Adam without the cycled beta1 and for optax's own one-cycle lr.
        "shift",
        "uncycled_beta1",
        "optax_cosine_onecycle",
    ],
)
def test_float32_tolerance_detects_wrong_schedules(mutate):
    s = OneCycle(max_lr=0.05, total_steps=20)
    params0, grads = _problem(seed=0, n_steps=20)
    h_t = run_torch(s, params0, grads, np.float32)
    lr_table, b1_table = s.learning_rates(), s.beta1s()
    if mutate == "shift":
        lr_table = np.concatenate([lr_table[1:], lr_table[-1:]])
        b1_table = np.concatenate([b1_table[1:], b1_table[-1:]])
    elif mutate == "uncycled_beta1":
        b1_table = np.full_like(b1_table, s.max_momentum)
    else:
        sched = optax.cosine_onecycle_schedule(
            s.total_steps, s.max_lr, s.pct_start, s.div_factor, s.final_div_factor
        )
        lr_table = np.array([float(sched(i)) for i in range(s.total_steps)])
    last = s.total_steps - 1
    tx = optax.inject_hyperparams(optax.adam)(
        learning_rate=lambda c: jnp.asarray(lr_table, jnp.float32)[jnp.minimum(c, last)],
        b1=lambda c: jnp.asarray(b1_table, jnp.float32)[jnp.minimum(c, last)],
        b2=0.999,
        eps=1e-8,
    )
    params = {f"p{i}": jnp.asarray(p, jnp.float32) for i, p in enumerate(params0)}
    state = tx.init(params)
    h_o = []
    for step_grads in grads:
        g = {f"p{i}": jnp.asarray(x, jnp.float32) for i, x in enumerate(step_grads)}
        u, state = tx.update(g, state, params)
        params = optax.apply_updates(params, u)
        h_o.append([np.asarray(params[f"p{i}"]) for i in range(len(params0))])
    assert max_rel_diff(h_t, h_o) > 1e3 * FLOAT32_RTOL


def test_optax_state_keeps_param_dtype_under_x64(x64):
    # Float32 params with x64 on: hyperparams and moments stay float32.
    s = OneCycle(max_lr=0.01, total_steps=10)
    tx = make_optax_optimizer(s)
    params = {"w": jnp.ones((3,), jnp.float32)}
    state = tx.init(params)
    updates, state = tx.update({"w": jnp.ones((3,), jnp.float32)}, state, params)
    assert updates["w"].dtype == jnp.float32
    assert state.hyperparams["learning_rate"].dtype == jnp.float32
    assert state.hyperparams["b1"].dtype == jnp.float32
    assert state.inner_state[0].mu["w"].dtype == jnp.float32


def test_current_learning_rate_optax_reads_nested_state():
    s = OneCycle(max_lr=0.01, total_steps=10)
    tx = optax.chain(optax.clip_by_global_norm(1.0), make_optax_optimizer(s))
    params = {"w": jnp.zeros(2)}
    state = tx.init(params)
    _, state = tx.update({"w": jnp.ones(2)}, state, params)
    _, state = tx.update({"w": jnp.ones(2)}, state, params)
    assert current_learning_rate_optax(state) == pytest.approx(s.learning_rates()[1], rel=1e-6)
    with pytest.raises(ValueError, match="opt_state"):
        current_learning_rate_optax(optax.adam(0.1).init(params))


# ---------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    "kwargs,name",
    [
        (dict(max_lr=0.0, total_steps=10), "max_lr"),
        (dict(max_lr=-1e-3, total_steps=10), "max_lr"),
        (dict(max_lr=float("nan"), total_steps=10), "max_lr"),
        (dict(max_lr=float("inf"), total_steps=10), "max_lr"),
        (dict(max_lr=0.01, total_steps=1), "total_steps"),
        (dict(max_lr=0.01, total_steps=0), "total_steps"),
        (dict(max_lr=0.01, total_steps=10.0), "total_steps"),
        (dict(max_lr=0.01, total_steps=True), "total_steps"),
        (dict(max_lr=0.01, total_steps=10, pct_start=0.0), "pct_start"),
        (dict(max_lr=0.01, total_steps=10, pct_start=1.0), "pct_start"),
        (dict(max_lr=0.01, total_steps=10, pct_start=-0.1), "pct_start"),
        (dict(max_lr=0.01, total_steps=10, div_factor=0.0), "div_factor"),
        (dict(max_lr=0.01, total_steps=10, final_div_factor=-1.0), "final_div_factor"),
        (dict(max_lr=0.01, total_steps=10, base_momentum=1.0), "base_momentum"),
        (dict(max_lr=0.01, total_steps=10, max_momentum=-0.1), "max_momentum"),
    ],
)
def test_bad_inputs_raise_naming_the_argument(kwargs, name):
    with pytest.raises(ValueError) as info:
        OneCycle(**kwargs)
    msg = str(info.value)
    assert msg.startswith(name + ":")
    assert "expected" in msg and repr(kwargs[name]) in msg


@pytest.mark.parametrize("total_steps,pct_start", [(10, 0.1), (4, 0.25), (20, 0.05)])
def test_zero_width_warmup_rejected_like_torch(total_steps, pct_start):
    # torch's OneCycleLR divides by the phase width and fails at construction.
    w = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([w], lr=0.01)
    with pytest.raises(ZeroDivisionError):
        torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=0.01, total_steps=total_steps, pct_start=pct_start
        )
    with pytest.raises(ValueError, match="pct_start, total_steps"):
        OneCycle(max_lr=0.01, total_steps=total_steps, pct_start=pct_start)


def test_numpy_scalars_accepted():
    s = OneCycle(max_lr=np.float32(0.01), total_steps=np.int64(15), pct_start=np.float64(0.3))
    assert type(s.total_steps) is int and type(s.max_lr) is float
    t_lr, _ = torch_schedule(s)
    np.testing.assert_allclose(s.learning_rates(), t_lr, rtol=1e-12, atol=0)


# ------------------------------------------- one step at every phase of the cycle

# Issue 3, part 1: "one Adam + one-cycle step from identical parameters and
# gradients gives identical parameters (float64, relative 1e-12)" — here for
# the brief's cycles, taken at every phase of the cycle (first step, warm-up,
# the steps either side of the peak, annealing, last step): both optimizers
# are put in the *same* state (parameters, Adam moments, step count k) and take
# one step with the same gradients. The error is the per-tensor relative
# error max|Δ| / max|p| (helpers.parity.relative_error), no floor at 1.
# Measured: at most 1.1e-16 (half a float64 ulp of the largest entry), 5900/0.3.
CYCLES = [(10, 0.3), (15, 0.3), (59 * 3, 0.3), (59 * 100, 0.3), (15, 0.25), (59 * 3, 0.37)]


def _cycle_positions(s: OneCycle) -> list[int]:
    end1 = s.pct_start * s.total_steps - 1  # torch's (fractional) end of the warm-up
    last = s.total_steps - 1
    points = {0, 1, max(int(end1) // 2, 0), math.floor(end1), math.floor(end1) + 1,
              (math.floor(end1) + last) // 2, last - 1, last}
    return sorted(k for k in points if 0 <= k <= last)


@pytest.mark.parametrize("total_steps,pct_start", CYCLES)
def test_one_step_from_identical_state_every_phase_float64(x64, total_steps, pct_start):
    import warnings

    from helpers.parity import relative_error

    s = OneCycle(max_lr=0.01, total_steps=total_steps, pct_start=pct_start)
    lrs, b1s = s.learning_rates(), s.beta1s()
    tx = make_optax_optimizer(s)
    step = jax.jit(lambda p, st, g: tx.update(g, st, p))
    rng = np.random.default_rng(total_steps * 100 + int(pct_start * 100))
    positions = _cycle_positions(s)
    assert len(positions) >= 6  # both phases and both ends are visited

    w = [torch.nn.Parameter(torch.zeros(shape, dtype=torch.float64)) for shape in SHAPES]
    optimizer, scheduler = make_torch_optimizer(w, s)
    done = 0
    worst = 0.0
    for k in positions:
        with warnings.catch_warnings():  # stepping the scheduler alone: torch warns once
            warnings.simplefilter("ignore", UserWarning)
            while done < k:
                scheduler.step()
                done += 1
        assert optimizer.param_groups[0]["lr"] == lrs[k]
        assert optimizer.param_groups[0]["betas"][0] == b1s[k]

        params0 = [np.array(rng.standard_normal(shape)) for shape in SHAPES]
        mu = [np.array(0.1 * rng.standard_normal(shape)) for shape in SHAPES]
        nu = [np.array(0.01 * rng.random(shape) + 1e-6) for shape in SHAPES]
        grads = [np.array(rng.standard_normal(shape) * 10.0 ** (i - 2)) for i, shape in enumerate(SHAPES)]

        with torch.no_grad():
            for p, p0, m, v, g in zip(w, params0, mu, nu, grads):
                p.copy_(torch.from_numpy(p0))
                p.grad = torch.from_numpy(g.copy())
                optimizer.state[p] = {"step": torch.tensor(float(k)), "exp_avg": torch.from_numpy(m.copy()),
                                      "exp_avg_sq": torch.from_numpy(v.copy())}
        optimizer.step()  # no scheduler.step(): the next position restates everything
        expected = [p.detach().numpy().copy() for p in w]

        names = [f"p{i}" for i in range(len(SHAPES))]
        params = {n: jnp.asarray(p0) for n, p0 in zip(names, params0)}
        state = tx.init(params)
        count = jnp.asarray(k, state.count.dtype)
        adam, rest = state.inner_state
        state = state._replace(
            count=count,
            hyperparams_states={name: hs._replace(count=count) for name, hs in state.hyperparams_states.items()},
            inner_state=(adam._replace(count=count, mu={n: jnp.asarray(m) for n, m in zip(names, mu)},
                                       nu={n: jnp.asarray(v) for n, v in zip(names, nu)}), rest),
        )
        updates, new_state = step(params, state, {n: jnp.asarray(g) for n, g in zip(names, grads)})
        assert float(new_state.hyperparams["learning_rate"]) == lrs[k]
        assert float(new_state.hyperparams["b1"]) == b1s[k]
        actual = optax.apply_updates(params, updates)
        for n, e, p0 in zip(names, expected, params0):
            a = np.asarray(actual[n])
            assert a.dtype == np.float64
            assert np.all(np.abs(e - p0) > 0), f"step {k} {n}: torch did not move every entry"
            err = relative_error(a, e)
            worst = max(worst, err)
            assert err <= 1e-12, f"{total_steps}/{pct_start} step {k} {n}: relative error {err:.2e}"
    print(f"\n{total_steps}/{pct_start}: one step at {positions}: worst relative error {worst:.1e}")

"""Adam with the one-cycle policy, identical in PyTorch and optax.

The demos train with the reference recipe::

    optimizer = torch.optim.Adam(params, lr=max_lr)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=max_lr, epochs=E, steps_per_epoch=S)
    # after every batch: optimizer.step(); scheduler.step()

with every other setting at torch's default: ``pct_start=0.3``, cosine
annealing, ``div_factor=25``, ``final_div_factor=1e4``, two phases
(``three_phase=False``) and ``cycle_momentum=True``, which for Adam cycles
beta1 from 0.95 down to 0.85 at the peak learning rate and back up to 0.95.

This module gives the same optimizer on both sides:

* :class:`OneCycle` holds the schedule's settings and computes, in Python
  float64 with *the same expressions in the same order* as torch's
  ``OneCycleLR.get_lr``, the learning rate and the beta1 that optimizer step
  ``k`` uses, for ``k = 0 .. total_steps - 1``.
* :func:`make_torch_optimizer` builds the torch pair from it.
* :func:`make_optax_optimizer` builds
  ``optax.inject_hyperparams(optax.adam)(learning_rate=lr_schedule,
  b1=b1_schedule, b2=0.999, eps=1e-8)`` where both schedules index those
  precomputed tables with the optimizer's step count, so the JAX side uses
  bit-for-bit the values torch uses (in float64; in float32 each value is the
  float64 value rounded once).

``optax.cosine_onecycle_schedule`` is not used: its phase boundaries sit one
step away from torch's (torch ends the warm-up at the fractional step
``float(pct_start * total_steps) - 1``), it reaches a different final value,
and it does not cycle beta1.

Step counts. Both sides are meant for exactly ``total_steps`` optimizer steps
(``epochs * steps_per_epoch`` in the reference recipe). Torch's scheduler
computes a value for step ``total_steps`` as well (after the last batch's
``scheduler.step()``) but raises ``ValueError`` ("Tried to step ...") at the
``scheduler.step()`` after that. The optax schedules hold the value of step
``total_steps - 1`` for any later step instead of raising, since a jitted
schedule cannot raise; do not rely on either past ``total_steps``.

Adam itself is the same maths on both sides (Kingma & Ba): the first-moment
bias correction ``1 - beta1**t`` uses the *current* beta1 in torch
(``torch.optim.Adam`` reads ``group["betas"]`` at every step) and in optax
(``scale_by_adam`` receives the injected ``b1``), and eps is added outside
the square root in both.

Sources:

* PyTorch ``OneCycleLR``:
  https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.OneCycleLR.html
  (formula read from ``torch/optim/lr_scheduler.py``, torch 2.13).
* PyTorch ``Adam``:
  https://pytorch.org/docs/stable/generated/torch.optim.Adam.html
* L. N. Smith and N. Topin, "Super-Convergence: Very Fast Training of Neural
  Networks Using Large Learning Rates", 2017, https://arxiv.org/abs/1708.07120
* D. P. Kingma and J. Ba, "Adam: A Method for Stochastic Optimization",
  2014, https://arxiv.org/abs/1412.6980
* optax ``inject_hyperparams``:
  https://optax.readthedocs.io/en/latest/api/optimizer_schedules.html
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover - imports for annotations only
    import optax
    import torch

__all__ = [
    "ADAM_B2",
    "ADAM_EPS",
    "OneCycle",
    "make_torch_optimizer",
    "make_optax_optimizer",
    "current_learning_rate_optax",
]

#: torch.optim.Adam's default beta2 and eps, used on both sides.
ADAM_B2 = 0.999
ADAM_EPS = 1e-8


def _annealing_cos(start: float, end: float, pct: float) -> float:
    """Cosine anneal from ``start`` to ``end`` as ``pct`` goes from 0 to 1.

    Same expression, same order of operations as torch's
    ``OneCycleLR._annealing_cos``, so the float64 result is identical.
    """
    cos_out = math.cos(math.pi * pct) + 1
    return end + (start - end) / 2.0 * cos_out


@dataclass(frozen=True)
class OneCycle:
    """Settings of torch's two-phase, cosine one-cycle policy (its defaults).

    Phase 1 (warm-up) runs the learning rate from ``max_lr / div_factor`` up
    to ``max_lr`` and beta1 from ``max_momentum`` down to ``base_momentum``;
    phase 2 runs the learning rate down to
    ``max_lr / div_factor / final_div_factor`` and beta1 back up to
    ``max_momentum``. As in torch, phase 1 ends at the (possibly fractional)
    step ``float(pct_start * total_steps) - 1`` and phase 2 at
    ``total_steps - 1``; step ``k`` lies in phase 1 when ``k <= end`` of
    phase 1 and is placed at ``pct = (k - start) / (end - start)`` of its
    phase (Smith & Topin 2017, https://arxiv.org/abs/1708.07120; the
    two-phase variant is fastai's, which torch follows by default).

    Args:
        max_lr: peak learning rate (> 0, finite).
        total_steps: number of optimizer steps in the cycle (an int >= 2);
            ``epochs * steps_per_epoch`` in the reference recipe.
        pct_start: fraction of the cycle spent warming up, 0 < pct_start < 1.
            When ``pct_start * total_steps < 1`` phase 1 holds no step and
            the cycle starts part-way down phase 2, exactly as in torch.
        div_factor: initial lr = ``max_lr / div_factor`` (> 0).
        final_div_factor: final lr = initial lr / ``final_div_factor`` (> 0).
        base_momentum: beta1 at the peak learning rate, in [0, 1).
        max_momentum: beta1 at the start and the end, in [0, 1).

    Raises:
        ValueError: for any setting out of range, naming the argument, the
            expected and the received value; also for a schedule whose phase
            has zero width (``pct_start * total_steps == 1`` exactly, e.g.
            ``total_steps=10, pct_start=0.1``). Torch's ``OneCycleLR`` does
            not check phase widths and fails on those with a
            ``ZeroDivisionError`` (at construction for phase 1); here the
            same settings are rejected up front, with a clear message.
    """

    max_lr: float
    total_steps: int
    pct_start: float = 0.3
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    base_momentum: float = 0.85
    max_momentum: float = 0.95

    def __post_init__(self) -> None:
        def bad(name: str, expected: str, value: Any) -> ValueError:
            return ValueError(f"{name}: expected {expected}, got {value!r}")

        ts = self.total_steps
        if isinstance(ts, bool) or not isinstance(ts, numbers.Integral) or ts < 2:
            raise bad("total_steps", "an integer >= 2", ts)
        for name in ("max_lr", "div_factor", "final_div_factor"):
            v = getattr(self, name)
            if not _is_real(v) or not math.isfinite(v) or not v > 0:
                raise bad(name, "a finite number > 0", v)
        p = self.pct_start
        if not _is_real(p) or not 0.0 < p < 1.0:
            raise bad("pct_start", "a number with 0 < pct_start < 1", p)
        for name in ("base_momentum", "max_momentum"):
            v = getattr(self, name)
            if not _is_real(v) or not 0.0 <= v < 1.0:
                raise bad(name, "a number in [0, 1) (Adam's beta1)", v)
        # Normalise numpy scalars etc. to plain Python numbers, so the tables
        # are computed with Python floats exactly like torch.
        object.__setattr__(self, "total_steps", int(ts))
        for name in (
            "max_lr",
            "pct_start",
            "div_factor",
            "final_div_factor",
            "base_momentum",
            "max_momentum",
        ):
            object.__setattr__(self, name, float(getattr(self, name)))

        # Zero-width phases: torch divides by (end_step - start_step).
        end1 = self._phase1_end()
        last = float(self.total_steps - 1)
        if end1 == 0.0:
            raise ValueError(
                "pct_start, total_steps: the warm-up phase has zero width "
                f"(pct_start * total_steps = {self.pct_start!r} * "
                f"{self.total_steps} = 1); expected pct_start * total_steps "
                "!= 1 (torch's OneCycleLR fails with ZeroDivisionError here)"
            )
        if last - end1 == 0.0:  # not reached for pct_start < 1; cheap to keep
            raise ValueError(
                "pct_start, total_steps: the annealing phase has zero width "
                f"(pct_start={self.pct_start!r}, total_steps={self.total_steps})"
            )

    def _phase1_end(self) -> float:
        # torch: "end_step": float(pct_start * self.total_steps) - 1
        return float(self.pct_start * self.total_steps) - 1

    def _tables(self) -> tuple[np.ndarray, np.ndarray]:
        initial_lr = self.max_lr / self.div_factor
        min_lr = initial_lr / self.final_div_factor
        phases = (
            # (end_step, start_lr, end_lr, start_momentum, end_momentum)
            (self._phase1_end(), initial_lr, self.max_lr,
             self.max_momentum, self.base_momentum),
            (self.total_steps - 1, self.max_lr, min_lr,
             self.base_momentum, self.max_momentum),
        )
        lrs = np.empty(self.total_steps, dtype=np.float64)
        betas = np.empty(self.total_steps, dtype=np.float64)
        for step_num in range(self.total_steps):
            # Mirrors OneCycleLR.get_lr with step_num = scheduler.last_epoch,
            # which equals the index of the optimizer step about to run.
            start_step = 0.0
            for i, (end_step, lr0, lr1, m0, m1) in enumerate(phases):
                if step_num <= end_step or i == len(phases) - 1:
                    pct = (step_num - start_step) / (end_step - start_step)
                    lrs[step_num] = _annealing_cos(lr0, lr1, pct)
                    betas[step_num] = _annealing_cos(m0, m1, pct)
                    break
                start_step = end_step
        return lrs, betas

    def learning_rates(self) -> np.ndarray:
        """Learning rate of optimizer steps ``0 .. total_steps-1``, float64.

        Equal, bit for bit, to ``optimizer.param_groups[0]["lr"]`` read
        before each ``optimizer.step()`` under torch's ``OneCycleLR``.
        """
        return self._tables()[0]

    def beta1s(self) -> np.ndarray:
        """Adam beta1 of optimizer steps ``0 .. total_steps-1``, float64.

        Equal, bit for bit, to ``optimizer.param_groups[0]["betas"][0]``
        read before each ``optimizer.step()`` under torch's ``OneCycleLR``
        with ``cycle_momentum=True``.
        """
        return self._tables()[1]


def _is_real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def make_torch_optimizer(
    params: Any, schedule: OneCycle
) -> tuple["torch.optim.Adam", "torch.optim.lr_scheduler.OneCycleLR"]:
    """The reference recipe: ``Adam(params, lr=max_lr)`` + ``OneCycleLR``.

    Call ``optimizer.step()`` then ``scheduler.step()`` after every batch,
    ``schedule.total_steps`` times in all (see the module docstring).
    ``OneCycleLR`` is given ``total_steps`` directly, which is what it
    computes from ``epochs * steps_per_epoch``.
    """
    import torch

    optimizer = torch.optim.Adam(
        params, lr=schedule.max_lr, betas=(0.9, ADAM_B2), eps=ADAM_EPS
    )
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=schedule.max_lr,
        total_steps=schedule.total_steps,
        pct_start=schedule.pct_start,
        anneal_strategy="cos",
        cycle_momentum=True,
        base_momentum=schedule.base_momentum,
        max_momentum=schedule.max_momentum,
        div_factor=schedule.div_factor,
        final_div_factor=schedule.final_div_factor,
        three_phase=False,
    )
    return optimizer, scheduler


def make_optax_optimizer(schedule: OneCycle) -> "optax.GradientTransformation":
    """``optax.inject_hyperparams(optax.adam)`` with torch's one-cycle values.

    ``learning_rate`` and ``b1`` are schedules of the optimizer's step count
    that index :meth:`OneCycle.learning_rates` / :meth:`OneCycle.beta1s`
    (clamped to the last entry past ``total_steps - 1``); ``b2=0.999`` and
    ``eps=1e-8`` are torch Adam's defaults.

    Correspondence with torch: ``inject_hyperparams`` evaluates the schedules
    at its own ``count`` *before* running the inner Adam and stores those
    values in ``opt_state.hyperparams``; ``count`` is 0 at the first update.
    So update ``k`` (0-based) uses table entry ``k``, the value torch uses in
    its ``k``-th ``optimizer.step()``, and after that update
    ``opt_state.hyperparams`` holds exactly the values it used
    (after ``init`` they hold entry 0).

    dtype: the tables are cast to the highest float dtype of the parameters
    (of the updates when ``params`` is not passed), which is what
    ``inject_hyperparams`` does with plain float hyperparameters; a schedule
    returning a float64 array would otherwise stay float64 when x64 is on
    and silently turn float32 Adam moments into float64. The returned
    object wraps the inject_hyperparams transformation only to pick that
    dtype; its state is the ``InjectStatefulHyperparamsState`` itself.
    """
    import jax.numpy as jnp
    import optax

    lr_table = schedule.learning_rates()
    b1_table = schedule.beta1s()
    last = schedule.total_steps - 1

    def table_schedule(table: np.ndarray, dtype: Any):
        def fn(count):
            return jnp.asarray(table, dtype=dtype)[jnp.minimum(count, last)]

        return fn

    def build(dtype: Any) -> optax.GradientTransformationExtraArgs:
        return optax.inject_hyperparams(optax.adam)(
            learning_rate=table_schedule(lr_table, dtype),
            b1=table_schedule(b1_table, dtype),
            b2=ADAM_B2,
            eps=ADAM_EPS,
        )

    def init_fn(params):
        return build(optax.tree.dtype(params, "highest")).init(params)

    def update_fn(updates, state, params=None):
        tree = params if params is not None else updates
        return build(optax.tree.dtype(tree, "highest")).update(
            updates, state, params
        )

    return optax.GradientTransformation(init_fn, update_fn)


def current_learning_rate_optax(opt_state: Any) -> float:
    """The learning rate in ``opt_state``'s injected hyperparameters.

    That is the rate the most recent update used (the first step's rate
    right after ``init``); torch's ``scheduler.get_last_lr()`` after
    ``scheduler.step()`` shows the *next* step's rate instead. Accepts the
    state of :func:`make_optax_optimizer`, a tuple/list containing it (e.g.
    an ``optax.chain`` state), or an ``nnx.Optimizer``'s ``opt_state``.
    """
    found = _find_hyperparams(opt_state)
    if found is None:
        raise ValueError(
            "opt_state: expected an optax inject_hyperparams state (with a "
            f"'learning_rate' hyperparameter), got {type(opt_state).__name__}"
        )
    value = found["learning_rate"]
    if hasattr(value, "get_value"):  # flax nnx Variable
        value = value.get_value()
    elif hasattr(value, "value") and not hasattr(value, "dtype"):
        value = value.value
    return float(np.asarray(value))


def _find_hyperparams(state: Any):
    hp = getattr(state, "hyperparams", None)
    if hp is not None and "learning_rate" in hp:
        return hp
    if isinstance(state, (tuple, list)):
        for sub in state:
            found = _find_hyperparams(sub)
            if found is not None:
                return found
    return None

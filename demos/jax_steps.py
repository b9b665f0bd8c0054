"""The JAX demos' compiled functions: one training step, its epoch scan, the evaluation scan.

Pure functions of arrays, shared by :class:`demos.train_jax.JaxTrainer` (one
run) and :class:`demos.parallel_jax.JaxRunGroup` (``K`` runs at once). Nothing
here assumes a device: the callers place the data with ``jax.device_put``
(or a sharding over the run axis) and ``jax.jit`` what is built here.

The host-side helpers at the end (:func:`padded_chunks`, :func:`augment_chunk`,
...) turn a plan's batches into the fixed-shape numpy arrays these take.

Shapes (``B`` the batch size, ``S`` the steps of one call, ``K`` the runs):

* a training step takes the parameters and optimizer state, the whole
  training set (``(N, H, W, C)`` images, ``(N,)`` int32 labels, on the
  device), the batch's int32 ``(B,)`` example indices, its augmentation's
  ``(B, H)`` / ``(B, W)`` gather indices (``None`` without augmentation) and a
  ``(B,)`` mask (1 for real examples, 0 for the padding of a partial batch);
  it returns the new parameters and state, the batch's mean loss and its
  number of correct predictions;
* :func:`scan_steps` runs ``S`` such steps in one ``lax.scan``, the batches
  stacked on a leading axis; a step whose ``active`` flag is false leaves
  everything unchanged (it pads a short last chunk to the compiled length);
* :func:`over_runs` maps a step over a leading run axis of the parameters,
  the optimizer state and the batch plans (``jax.vmap``, or ``lax.map``: one
  run after the other inside the compiled program, see there).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from .augment import AugmentPlan
from .losses import smoothed_cross_entropy

__all__ = ["RUN_AXIS_MODES", "gather_batch", "make_train_step", "make_eval_step", "scan_steps",
           "unrolled_chunks", "scan_eval", "over_runs", "padded_chunks", "augment_indices", "augment_chunk", "batch_ranges"]

#: How :func:`over_runs` maps a step over the runs: ``"vmap"`` (batched operations; the
#: convolutions become grouped ones) or ``"map"`` (``lax.map``: the runs one after another).
RUN_AXIS_MODES = ("vmap", "map")


def gather_batch(images, index, rows, cols, padding: int):
    """``images[index]`` (NHWC), zero-padded by ``padding`` and gathered at ``rows``/``cols``.

    ``rows``/``cols`` (``(B, H)``/``(B, W)`` ints, :func:`demos.augment.gather_indices`)
    ``None``: no augmentation, the plain batch.
    """
    x = images[index]
    if rows is None:
        return x
    if padding:
        x = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    batch = jnp.arange(x.shape[0])[:, None, None]
    return x[batch, rows[:, :, None], cols[:, None, :]]


def _masked_loss(graphdef, params, x, y, mask, label_smoothing: float):
    logits = nnx.merge(graphdef, params)(x)
    losses = smoothed_cross_entropy(logits, y, label_smoothing)
    loss = jnp.sum(losses * mask) / jnp.sum(mask)
    correct = jnp.sum((jnp.argmax(logits, -1) == y) * mask)
    return loss, correct


def make_train_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation, padding: int,
                    label_smoothing: float = 0.0) -> Callable:
    """One Adam step: ``(params, opt_state, images, labels, index, rows, cols, mask)`` ->
    ``(params, opt_state, loss, correct)``; ``padding``: the augmentation's crop padding;
    ``label_smoothing``: ε of the loss (:func:`demos.losses.smoothed_cross_entropy`)."""

    def train_step(params, opt_state, images, labels, index, rows, cols, mask):
        x, y = gather_batch(images, index, rows, cols, padding), labels[index]
        (loss, correct), grads = jax.value_and_grad(
            lambda p: _masked_loss(graphdef, p, x, y, mask, label_smoothing), has_aux=True
        )(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, correct

    return train_step


def make_eval_step(graphdef: nnx.GraphDef) -> Callable:
    """``(params, x, y, mask)`` -> the batch's summed cross-entropy and correct predictions."""

    def eval_step(params, x, y, mask):
        logits = nnx.merge(graphdef, params)(x)
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, y)
        return jnp.sum(losses * mask), jnp.sum((jnp.argmax(logits, -1) == y) * mask)

    return eval_step


def scan_steps(step: Callable, *, unrolled: bool = False) -> Callable:
    """``step`` over a chunk of batches in one compiled call.

    Returns ``train_scan(params, opt_state, images, labels, index, rows, cols, mask, active)``
    with the per-step arguments stacked on a leading axis of length ``S``
    (``active``: ``(S,)`` bool) -> ``(params, opt_state, losses, corrects)``, the
    last two stacked per step (a skipped step gives 0). An active step computes
    exactly what ``step`` alone computes.

    ``unrolled=False``: a ``lax.scan`` whose body skips an inactive step by a
    ``lax.cond`` branch that returns the carry untouched. ``unrolled=True``: the
    ``S`` steps written out one after another (traced ``S`` times: compile time
    grows with ``S``), an inactive step's results discarded with ``jnp.where``;
    on XLA:CPU a step inside a ``while`` loop or a ``cond`` ran 3-5x slower than
    the same step compiled alone, and straight-line steps as fast
    (:func:`unrolled_chunks`).
    """

    def take(carry, batch, images, labels):
        new_params, new_state, loss, correct = step(*carry, images, labels, *batch)
        return (new_params, new_state), (loss, correct)

    def train_scan(params, opt_state, images, labels, index, rows, cols, mask, active):
        def body(carry, xs):
            batch, is_active = xs[:-1], xs[-1]
            shapes = jax.eval_shape(take, carry, batch, images, labels)[1]

            def skip(carry, batch, images, labels):
                return carry, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

            return jax.lax.cond(is_active, take, skip, carry, batch, images, labels)

        (params, opt_state), (losses, corrects) = jax.lax.scan(
            body, (params, opt_state), (index, rows, cols, mask, active))
        return params, opt_state, losses, corrects

    def train_unrolled(params, opt_state, images, labels, index, rows, cols, mask, active):
        carry, outputs = (params, opt_state), []
        for i in range(index.shape[0]):
            batch = tuple(None if a is None else a[i] for a in (index, rows, cols, mask))
            new_carry, out = take(carry, batch, images, labels)
            carry = jax.tree.map(lambda new, old: jnp.where(active[i], new, old), new_carry, carry)
            outputs.append(jax.tree.map(lambda o: jnp.where(active[i], o, jnp.zeros_like(o)), out))
        losses, corrects = (jnp.stack(values) for values in zip(*outputs))
        return (*carry, losses, corrects)

    return train_unrolled if unrolled else train_scan


def unrolled_chunks() -> bool:
    """Whether :func:`scan_steps` writes the chunk's steps out (``unrolled``): on a CPU.

    Measured on a 2-core EPYC (XLA:CPU, Fashion-MNIST network, batch 256, one
    thread): one step compiled alone 0.06-0.08 s; the same step in a ``lax.scan``
    0.26-0.29 s whatever the length (1 or 8) and whatever the skip (``cond`` or
    ``where``), 0.28 s written out with a ``cond``, 0.065 s written out with
    ``where``. Accelerators keep the ``lax.scan``, whose compile time does not
    grow with the epoch's length.
    """
    return jax.devices()[0].platform == "cpu"


def scan_eval(eval_step: Callable) -> Callable:
    """``eval_step`` over every batch of a set in one ``lax.scan``.

    Returns ``eval_scan(params, images, labels, index, mask)`` with ``index``/``mask``
    ``(S, B)`` (the set's batches, the last padded and masked) -> the per-batch
    summed losses and correct predictions, ``(S,)`` each.
    """

    def eval_scan(params, images, labels, index, mask):
        def body(_, xs):
            batch_index, batch_mask = xs
            return None, eval_step(params, images[batch_index], labels[batch_index], batch_mask)

        return jax.lax.scan(body, None, (index, mask))[1]

    return eval_scan


def over_runs(fn: Callable, in_axes: tuple, mode: str) -> Callable:
    """``fn`` mapped over a leading run axis of the arguments whose ``in_axes`` entry is 0.

    ``mode`` ``"vmap"``: ``jax.vmap`` (all runs in each operation; convolutions
    of per-run kernels become grouped convolutions, fast on GPUs, measured
    slow on XLA:CPU). ``"map"``: ``lax.map``, one run after another inside the
    compiled program, each computed exactly as a single run. Arguments with
    ``in_axes`` ``None`` are shared by all runs; every output has the run axis first.
    """
    if mode == "vmap":
        return jax.vmap(fn, in_axes=in_axes)
    if mode != "map":
        raise ValueError(f"mode: expected one of {list(RUN_AXIS_MODES)}, got {mode!r}")

    def mapped(*args):
        per_run = tuple(a for a, axis in zip(args, in_axes) if axis == 0)

        def one(run_args):
            it = iter(run_args)
            return fn(*(next(it) if axis == 0 else a for a, axis in zip(args, in_axes)))

        return jax.lax.map(one, per_run)

    return mapped


# ---------------------------------------------------------------- host-side inputs


def padded_chunks(batches: list[np.ndarray], batch_size: int, length: int, dtype
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``batches`` as the scan's arrays: int32 indices ``(length, batch_size)``, masks of
    ``dtype`` ``(length, batch_size)`` and the active flags ``(length,)``.

    Short batches are padded with index 0 and masked; steps past ``len(batches)`` are inactive.

    Raises:
        ValueError: more than ``length`` batches, or a batch of 0 or more than ``batch_size``.
    """
    if not 0 < len(batches) <= length:
        raise ValueError(f"batches: expected 1 to {length} batches per call, got {len(batches)}")
    index = np.zeros((length, batch_size), np.int32)
    mask = np.zeros((length, batch_size), dtype)
    for step, indices in enumerate(batches):
        n = len(indices)
        if not 0 < n <= batch_size:
            raise ValueError(f"indices: expected 1 to {batch_size} examples, got {n}")
        index[step, :n] = indices
        mask[step, :n] = 1
    return index, mask, np.arange(length) < len(batches)


def augment_indices(plan: AugmentPlan, indices: np.ndarray, epoch: int | None, batch_size: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The batch's int32 ``(batch_size, H)``, ``(batch_size, W)`` gather indices, padded like the batch.

    Raises:
        ValueError: ``epoch`` is ``None`` (``set_epoch`` not called) or bad ``indices``.
    """
    # Padding rows keep the uncropped window (any valid index would do: they are masked out).
    rows, cols = plan.batch_indices(np.asarray(indices), epoch)
    pad, n = plan.crop_padding, len(rows)
    rows_full = np.tile(np.arange(pad, pad + plan.height, dtype=np.int32), (batch_size, 1))
    cols_full = np.tile(np.arange(pad, pad + plan.width, dtype=np.int32), (batch_size, 1))
    rows_full[:n], cols_full[:n] = rows, cols
    return rows_full, cols_full


def augment_chunk(plan: AugmentPlan | None, batches: list[np.ndarray], epoch: int | None,
                  batch_size: int, length: int):
    """A chunk's gather indices ``(length, batch_size, H)``/``(.., W)``, or ``(None, None)`` without ``plan``.

    Steps past ``len(batches)`` (inactive) repeat the last batch's indices.
    """
    if plan is None:
        return None, None
    pairs = [augment_indices(plan, indices, epoch, batch_size) for indices in batches]
    pairs += [pairs[-1]] * (length - len(pairs))
    return np.stack([r for r, _ in pairs]), np.stack([c for _, c in pairs])


def batch_ranges(n: int, batch_size: int) -> list[np.ndarray]:
    """A set of ``n`` examples in order, as batches of ``batch_size`` (the last one partial)."""
    return [np.arange(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]

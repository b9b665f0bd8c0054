"""The JAX demo trainers compile each training and evaluation function once.

Every batch has the same shape (a partial last batch is padded and masked),
so an epoch with a partial batch, later epochs and evaluations (of the same
test set, as the demo does, or of sets of other sizes) must reuse the
compiled executables, and after the first epoch nothing at all may compile:
a recompilation per step would be a silent multi-second stall on CPU.
Counted from JAX's own compile log (``jax.log_compiles``), not from timings.

* the step loop (``--step-loop``): ``train_step`` and ``eval_step`` once each;
* the epoch scan (the default): ``train_scan`` (``train_unrolled`` on a CPU) once (its chunk length is fixed,
  a short last chunk is padded with skipped steps) and ``eval_scan`` once per
  evaluated set's shape;
* parallel runs (:class:`demos.parallel_jax.JaxRunGroup`): the same, the memory
  check's ahead-of-time compilation serving the first call.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers.jax_compiles import CompileLog

from demos.architectures import FASHION_MNIST
from demos.batch_plan import BatchPlan
from demos.jax_steps import unrolled_chunks
from demos.optim import OneCycle
from demos.parallel_jax import JaxRunGroup
from demos.train_jax import JaxTrainer

EXAMPLES, BATCH = 100, 32  # 3 full batches and a partial one of 4


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.random((EXAMPLES, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, EXAMPLES)


def _epoch(trainer, plan_batches: list, chunk: int | None) -> None:
    chunk = chunk or len(plan_batches)
    for start in range(0, len(plan_batches), chunk):
        trainer.train_steps(plan_batches[start:start + chunk])


@pytest.mark.parametrize("epoch_scan, steps_per_call", [(False, None), (True, 3)])
def test_train_and_eval_steps_compile_once(data, epoch_scan, steps_per_call):
    images, labels = data
    plan = BatchPlan(EXAMPLES, BATCH, seed=0)
    trainer = JaxTrainer(
        FASHION_MNIST, OneCycle(max_lr=0.01, total_steps=3 * plan.steps_per_epoch), images, labels,
        seed=0, batch_size=BATCH, epoch_scan=epoch_scan, steps_per_call=steps_per_call,
    )
    assert len(plan.batches(0)[-1]) < BATCH
    scanned = "train_unrolled" if unrolled_chunks() else "train_scan"  # chunks written out on a CPU
    train, evaluate = (scanned, "eval_scan") if epoch_scan else ("train_step", "eval_step")

    test_images, test_labels = images[:70], labels[:70]  # 2 full batches and a partial one
    with CompileLog() as first:
        _epoch(trainer, plan.batches(0), trainer.steps_per_call)  # chunks of 3 and 1 (padded)
        trainer.evaluate(test_images, test_labels)
    assert first.names.count(train) == 1, first.names
    assert first.names.count(evaluate) == 1, first.names

    # The demo's pattern: more epochs, the same test set after each.
    with CompileLog() as later:
        for epoch in (1, 2):
            _epoch(trainer, plan.batches(epoch), trainer.steps_per_call)
            trainer.evaluate(test_images, test_labels)
    assert later.names == [], f"compiled again after the first epoch: {later.names}"

    with CompileLog() as other_sets:
        trainer.evaluate(images, labels)
        trainer.evaluate(images[:5], labels[:5])  # smaller than one batch
    assert train not in other_sets.names, other_sets.names
    if epoch_scan:  # the scan takes the whole set: once per set shape
        assert other_sets.names.count(evaluate) == 2, other_sets.names
    else:  # only the device-side batch gather of a new set's shape may compile
        assert evaluate not in other_sets.names, other_sets.names


def test_parallel_runs_compile_once(data):
    images, labels = data
    plans = [BatchPlan(EXAMPLES, BATCH, seed) for seed in (0, 1)]
    with CompileLog() as first:
        group = JaxRunGroup(FASHION_MNIST, OneCycle(max_lr=0.01, total_steps=2 * plans[0].steps_per_epoch),
                            images, labels, seeds=[0, 1], batch_size=BATCH, mode="map",
                            steps_per_epoch=plans[0].steps_per_epoch, steps_per_call=3)
        for epoch in (0, 1):
            batches = [plan.batches(epoch) for plan in plans]
            for start in (0, 3):
                group.train_steps([run[start:start + 3] for run in batches])
            group.evaluate(images[:70], labels[:70])
    scanned = "train_unrolled" if unrolled_chunks() else "train_scan"
    assert first.names.count(scanned) == 1, first.names
    assert first.names.count("eval_scan") == 1, first.names

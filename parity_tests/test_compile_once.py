"""The JAX demo trainer compiles its training step once and its evaluation step once.

Every batch has the same shape (a partial last batch is padded and masked),
so an epoch with a partial batch, later epochs and evaluations (of the same
test set, as the demo does, or of sets of other sizes) must reuse the two
compiled executables, and after the first epoch nothing at all may compile:
a recompilation per step would be a silent multi-second stall on CPU.
Counted from JAX's own compile log (``jax.log_compiles``), not from timings.
"""

from __future__ import annotations

import numpy as np
from helpers.jax_compiles import CompileLog

from demos.architectures import FASHION_MNIST
from demos.batch_plan import BatchPlan
from demos.optim import OneCycle
from demos.train_jax import JaxTrainer


def test_train_and_eval_steps_compile_once():
    rng = np.random.default_rng(0)
    examples, batch_size = 100, 32  # 3 full batches and a partial one of 4
    images = rng.random((examples, 28, 28, 1), dtype=np.float32)
    labels = rng.integers(0, 10, examples)
    plan = BatchPlan(examples, batch_size, seed=0)
    trainer = JaxTrainer(
        FASHION_MNIST, OneCycle(max_lr=0.01, total_steps=3 * plan.steps_per_epoch), images, labels,
        seed=0, batch_size=batch_size,
    )
    assert len(plan.batches(0)[-1]) < batch_size

    test_images, test_labels = images[:70], labels[:70]  # 2 full batches and a partial one
    with CompileLog() as first:
        for indices in plan.batches(0):
            trainer.train_step(indices)
        trainer.evaluate(test_images, test_labels)
    assert first.names.count("train_step") == 1, first.names
    assert first.names.count("eval_step") == 1, first.names

    # The demo's pattern: more epochs, the same test set after each.
    with CompileLog() as later:
        for epoch in (1, 2):
            for indices in plan.batches(epoch):
                trainer.train_step(indices)
            trainer.evaluate(test_images, test_labels)
    assert later.names == [], f"compiled again after the first epoch: {later.names}"

    # Sets of other sizes reuse both steps (only the device-side batch
    # gather of a new set's shape may compile, once per shape).
    with CompileLog() as other_sets:
        trainer.evaluate(images, labels)
        trainer.evaluate(images[:5], labels[:5])  # smaller than one batch
    assert "train_step" not in other_sets.names and "eval_step" not in other_sets.names, other_sets.names

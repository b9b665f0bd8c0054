"""JAX runs of the trajectory setting through the step loop and through the epoch scan.

Shared by ``test_epoch_scan.py`` and ``measure_scan_float32.py``: the
Fashion-MNIST network on :func:`helpers.demo_trajectories.load_train_subset`
(500 images, batch 32: 16 steps an epoch, the last partial), two epochs,
driven as the runner drives a trainer (``train_steps`` in chunks of
``steps_per_call``, ``set_epoch`` first).
"""

from __future__ import annotations

import numpy as np
from helpers.demo_trajectories import BATCH, MAX_LR

from demos.architectures import FASHION_MNIST
from demos.augment import AugmentPlan
from demos.batch_plan import BatchPlan
from demos.optim import OneCycle
from demos.train_jax import JaxTrainer

__all__ = ["EPOCHS", "drive", "scan_and_loop"]

EPOCHS = 2


def _run(images, labels, seed: int, dtype: str, epoch_scan: bool, steps_per_call: int | None, augment: bool):
    plan = BatchPlan(len(labels), BATCH, seed)
    plan_augment = (AugmentPlan(len(labels), images.shape[1:3], seed, crop_padding=4, hflip=True)
                    if augment else None)
    trainer = JaxTrainer(FASHION_MNIST, OneCycle(max_lr=MAX_LR, total_steps=EPOCHS * plan.steps_per_epoch),
                         images, labels, seed=seed, dtype=dtype, batch_size=BATCH, augment=plan_augment,
                         epoch_scan=epoch_scan, steps_per_call=steps_per_call)
    return drive(trainer, plan, EPOCHS, images[:200], labels[:200])


def drive(trainer, plan: BatchPlan, epochs: int, eval_images, eval_labels):
    """Train one run's ``trainer`` as the runner does (``set_epoch``, then ``train_steps`` in
    chunks of ``steps_per_call``), evaluating after each epoch; returns (every step's loss,
    each epoch's evaluation, the final parameters as numpy)."""
    losses, evaluations = [], []
    for epoch in range(epochs):
        trainer.set_epoch(epoch)
        batches = plan.batches(epoch)
        chunk = trainer.steps_per_call or len(batches)
        for start in range(0, len(batches), chunk):
            losses += list(trainer.train_steps(batches[start:start + chunk])[0])
        evaluations.append(trainer.evaluate(eval_images, eval_labels))
    return np.array(losses), evaluations, trainer.parameters_numpy()


def scan_and_loop(images, labels, seed: int, dtype: str, *, steps_per_call: int | None = 5,
                  augment: bool = False) -> dict:
    """Both ways from the same seed: ``{"loop": (losses, evaluations, params), "scan": ...}``."""
    return {"loop": _run(images, labels, seed, dtype, False, None, augment),
            "scan": _run(images, labels, seed, dtype, True, steps_per_call, augment)}

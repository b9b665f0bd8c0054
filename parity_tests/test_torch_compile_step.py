"""torch's opt-in compiled step (``--compile-step``: ``torch.compile(mode="reduce-overhead")``,
CUDA graphs on a GPU): the same numbers as the eager step.

float64, two epochs of the Fashion-MNIST network on 96 generated images in
batches of 32 (full batches only: one compiled shape, to keep compilation short), augmentation on:
every step's loss, both evaluations and the final parameters equal the eager
trainer's to relative 1e-12; the whole epoch is one ``train_steps`` call (one
host synchronisation); the setting is recorded.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers.parity import relative_error
from helpers.scan_runs import drive

from demos.architectures import FASHION_MNIST
from demos.augment import AugmentPlan
from demos.batch_plan import BatchPlan
from demos.optim import OneCycle

RTOL = 1e-12
N, BATCH, EPOCHS, SEED = 96, 32, 2, 5


def _run(compile_step: bool):
    from demos.train_torch import TorchTrainer

    rng = np.random.default_rng(0)
    images, labels = rng.random((N, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, N)
    plan = BatchPlan(N, BATCH, SEED)
    trainer = TorchTrainer(FASHION_MNIST, OneCycle(0.01, EPOCHS * plan.steps_per_epoch), images, labels,
                           seed=SEED, dtype="float64", batch_size=BATCH, compile_kernels=False,
                           augment=AugmentPlan(N, (28, 28), SEED, crop_padding=4, hflip=True),
                           compile_step=compile_step)
    return trainer, drive(trainer, plan, EPOCHS, images[:70], labels[:70])


@pytest.mark.filterwarnings("ignore::UserWarning")  # "skipping cudagraphs" on a CPU
def test_compiled_step_equals_eager_float64():
    compiled, (losses, evaluations, params) = _run(True)
    eager, (eager_losses, eager_evaluations, eager_params) = _run(False)
    assert compiled.steps_per_call is None and eager.steps_per_call == 1
    assert compiled.framework_settings() == {"torch_compile": False, "torch_compile_step": True}
    worst = float(np.max(np.abs(losses - eager_losses) / np.abs(eager_losses)))
    for (loss, accuracy), (eager_loss, eager_accuracy) in zip(evaluations, eager_evaluations):
        worst = max(worst, abs(loss - eager_loss) / eager_loss)
        assert accuracy == eager_accuracy
    worst = max([worst] + [relative_error(params[name], value) for name, value in eager_params.items()])
    print(f"compiled step vs eager, float64: worst relative difference {worst:.1e}")
    assert worst <= RTOL

"""Random crop + horizontal flip (demos/augment.py): one seeded plan, bit-identical batches.

* the plan: deterministic per (seed, epoch), drawn per example (so independent
  of the visiting order and the batch size) from its own streams (so it does
  not change the batch plan's permutation, and the crops do not depend on
  whether flips are on, nor the reverse); offsets uniform in [0, 2 * padding],
  flips about half (statistical checks with a fixed seed);
* the gather: equals a straightforward NumPy reference (np.pad, a slice,
  a reversed column axis) on images of several shapes;
* the trainers: ``TorchTrainer.augmented_batch`` and ``JaxTrainer.augmented_batch``
  (the on-device gather their training steps run) are bit-identical to each
  other and to the reference, for full and partial batches;
* training: torch and JAX, float64, the CIFAR-10 network with crop and flip on,
  follow the same trajectory (every step's loss and the final parameters to
  relative 1e-9, as test_trajectories.py), and the JAX step compiles once.

The demo end to end with the flags, resume and the flags' record are in
test_cifar_demos.py.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
import torch
from helpers.parity import assert_close, jax_precision, relative_error
from helpers.demo_trajectories import canonical_jax, canonical_torch, start_from_torch_params, step_relative_errors
from helpers.jax_compiles import CompileLog

from demos.architectures import CIFAR10
from demos.augment import CIFAR_CROP_PADDING, AugmentPlan, gather_indices
from demos.batch_plan import BatchPlan
from demos.optim import OneCycle
from demos.train_jax import JaxTrainer
from demos.train_torch import TorchTrainer

FLOAT64_RTOL = 1e-9  # as test_trajectories.py


def reference_augment(images: np.ndarray, offsets, flips, padding: int) -> np.ndarray:
    """Crop (and flip) NHWC ``images`` the obvious way: np.pad, a slice, ``[:, ::-1]``."""
    n, height, width, _ = images.shape
    padded = np.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    out = []
    for image, (dy, dx), flip in zip(padded, offsets, flips):
        crop = image[dy:dy + height, dx:dx + width]
        out.append(crop[:, ::-1] if flip else crop)
    return np.stack(out)


def cifar_like(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random 32x32x3 images in [0, 1] (multiples of 1/255, as the loader gives) and labels."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 32, 32, 3)).astype(np.float32) / 255
    return images, rng.integers(0, 10, n).astype(np.int64)


# ------------------------------------------------------------------ the plan


def test_plan_is_deterministic_per_seed_and_epoch():
    n = 500
    plan = AugmentPlan(n, (32, 32), 7, crop_padding=4, hflip=True)
    again = AugmentPlan(n, (32, 32), 7, crop_padding=4, hflip=True)
    offsets, flips = plan.draw(3)
    plan.draw(0)  # asking other epochs in between changes nothing
    for got in (plan.draw(3), again.draw(3)):
        np.testing.assert_array_equal(got[0], offsets)
        np.testing.assert_array_equal(got[1], flips)
    assert offsets.dtype == np.int64 and offsets.shape == (n, 2)
    assert flips.dtype == np.bool_ and flips.shape == (n,)
    other_epoch, other_seed = plan.draw(4), AugmentPlan(n, (32, 32), 8, crop_padding=4, hflip=True).draw(3)
    for other in (other_epoch, other_seed):
        assert (other[0] != offsets).mean() > 0.5 and (other[1] != flips).mean() > 0.3
    # The documented streams: (seed, epoch, 1) for the crops, (seed, epoch, 2) for the flips.
    np.testing.assert_array_equal(offsets, np.random.default_rng((7, 3, 1)).integers(0, 9, (n, 2)))
    np.testing.assert_array_equal(flips, np.random.default_rng((7, 3, 2)).random(n) < 0.5)
    # Each operation's draws do not depend on whether the other is on.
    np.testing.assert_array_equal(AugmentPlan(n, (32, 32), 7, crop_padding=4).draw(3)[0], offsets)
    np.testing.assert_array_equal(AugmentPlan(n, (32, 32), 7, hflip=True).draw(3)[1], flips)


def test_plan_is_independent_of_the_visiting_order():
    """Drawn per example: the same example gets the same window whatever batch it is in,
    and the batch plan's permutation is not the augmentation's stream."""
    n, seed, epoch = 100, 5, 2
    plan = AugmentPlan(n, (32, 32), seed, crop_padding=4, hflip=True)
    offsets, flips = plan.draw(epoch)
    by_example = {}
    for batch_size in (7, 32, 100):
        for indices in BatchPlan(n, batch_size, seed).batches(epoch):
            rows, cols = plan.batch_indices(indices, epoch)
            for i, r, c in zip(indices, rows, cols):
                if int(i) in by_example:
                    np.testing.assert_array_equal(by_example[int(i)][0], r)
                    np.testing.assert_array_equal(by_example[int(i)][1], c)
                by_example[int(i)] = (r, c)
    assert sorted(by_example) == list(range(n))
    rows, cols = plan.batch_indices(np.arange(n), epoch)
    np.testing.assert_array_equal(rows[:, 0], offsets[:, 0])
    # Not the permutation's generator: (seed, epoch) would be the batch plan's stream.
    permutation_stream = np.random.default_rng((seed, epoch))
    assert not np.array_equal(offsets, permutation_stream.integers(0, 9, (n, 2)))
    np.testing.assert_array_equal(BatchPlan(n, 10, seed).permutation(epoch),
                                  np.random.default_rng((seed, epoch)).permutation(n))


def test_offsets_are_uniform_in_range_and_flips_about_half():
    n = 20_000
    offsets, flips = AugmentPlan(n, (32, 32), 0, crop_padding=CIFAR_CROP_PADDING, hflip=True).draw(0)
    assert CIFAR_CROP_PADDING == 4
    assert offsets.min() == 0 and offsets.max() == 2 * CIFAR_CROP_PADDING
    for axis in (0, 1):  # each of the 9 offsets about n / 9 times (sd ~ 42)
        counts = np.bincount(offsets[:, axis], minlength=9)
        assert np.all(np.abs(counts - n / 9) < 0.06 * n / 9), counts
    assert abs(np.corrcoef(offsets[:, 0], offsets[:, 1])[0, 1]) < 0.03  # dy and dx drawn apart
    assert 0.48 < flips.mean() < 0.52
    assert abs(np.corrcoef(offsets[:, 1], flips)[0, 1]) < 0.03
    # One operation alone: the other leaves the images as they are.
    crop_only = AugmentPlan(n, (32, 32), 0, crop_padding=4)
    flip_only = AugmentPlan(n, (32, 32), 0, hflip=True)
    assert not crop_only.draw(0)[1].any() and not flip_only.draw(0)[0].any()
    assert crop_only.enabled and flip_only.enabled and not AugmentPlan(n, (32, 32), 0).enabled
    assert crop_only.settings() == {"random_crop_padding": 4, "hflip": False}
    assert flip_only.settings() == {"random_crop_padding": 0, "hflip": True}


# ------------------------------------------------------------------ the gather


@pytest.mark.parametrize("shape, padding", [((5, 7, 3), 2), ((32, 32, 3), 4), ((28, 28, 1), 4),
                                            ((4, 4, 2), 0), ((1, 6, 1), 1)])
def test_gather_equals_numpy_reference(shape, padding):
    rng = np.random.default_rng(sum(shape) + padding)
    n = 12
    images = rng.random((n, *shape))
    offsets = rng.integers(0, 2 * padding + 1, (n, 2))
    offsets[0], offsets[1] = 0, 2 * padding  # both corners
    flips = rng.random(n) < 0.5
    flips[:2] = [True, False]
    rows, cols = gather_indices(offsets, flips, shape[0], shape[1])
    assert rows.shape == (n, shape[0]) and cols.shape == (n, shape[1]) and rows.dtype == np.int64
    padded = np.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    got = padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
    np.testing.assert_array_equal(got, reference_augment(images, offsets, flips, padding))
    if padding == 0:  # no crop: the flip alone
        np.testing.assert_array_equal(got[~flips], images[~flips])
        np.testing.assert_array_equal(got[flips], images[flips][:, :, ::-1])


def test_arguments_are_validated():
    good = dict(crop_padding=4, hflip=True)
    for kwargs, message in [
        (dict(num_examples=0, image_size=(32, 32), seed=0), "num_examples: expected a positive int, got 0"),
        (dict(num_examples=5, image_size=(32,), seed=0), "image_size: expected (height, width)"),
        (dict(num_examples=5, image_size=(32, 0), seed=0), "got (32, 0)"),
        (dict(num_examples=5, image_size=(32, 32), seed=-1), "seed: expected a non-negative int, got -1"),
        (dict(num_examples=5, image_size=(32, 32), seed=0, crop_padding=-4),
         "crop_padding: expected a non-negative int, got -4"),
        (dict(num_examples=5, image_size=(32, 32), seed=0, crop_padding=True),
         "crop_padding: expected a non-negative int, got True"),
        (dict(num_examples=5, image_size=(32, 32), seed=0, hflip=1), "hflip: expected a bool, got 1"),
    ]:
        with pytest.raises(ValueError) as error:
            AugmentPlan(**{**good, **kwargs})
        assert message in str(error.value)
    plan = AugmentPlan(5, (32, 32), 0, **good)
    with pytest.raises(ValueError, match=r"epoch: expected a non-negative int .* got None"):
        plan.draw(None)
    with pytest.raises(ValueError, match=r"indices: expected example indices in \[0, 5\), got \[0, 5\]"):
        plan.batch_indices(np.array([0, 5]), 0)
    with pytest.raises(ValueError, match=r"indices: expected a \(B,\) integer array, got float64"):
        plan.batch_indices(np.array([0.0]), 0)
    with pytest.raises(ValueError, match=r"offsets: expected a \(B, 2\) integer array, got int64 \(3,\)"):
        gather_indices(np.zeros(3, np.int64), np.zeros(3, bool), 4, 4)
    with pytest.raises(ValueError, match="offsets: expected non-negative offsets, got minimum -1"):
        gather_indices(np.array([[0, -1]]), np.zeros(1, bool), 4, 4)
    with pytest.raises(ValueError, match=r"flips: expected a \(1,\) bool array .* got int64 \(1,\)"):
        gather_indices(np.zeros((1, 2), np.int64), np.zeros(1, np.int64), 4, 4)
    with pytest.raises(ValueError, match="width: expected a positive int, got 0"):
        gather_indices(np.zeros((1, 2), np.int64), np.zeros(1, bool), 4, 0)


# ------------------------------------------------------------------ the trainers


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_trainers_augment_bit_identically(dtype):
    n, batch = 20, 8
    images, labels = cifar_like(n)
    schedule = OneCycle(max_lr=0.01, total_steps=10)
    plan = AugmentPlan(n, (32, 32), 3, crop_padding=4, hflip=True)
    with jax_precision(dtype):
        torch_trainer = TorchTrainer(CIFAR10, schedule, images, labels, seed=3, dtype=dtype,
                                     batch_size=batch, augment=plan)
        jax_trainer = JaxTrainer(CIFAR10, schedule, images, labels, seed=3, dtype=dtype,
                                 batch_size=batch, augment=plan)
        for trainer in (torch_trainer, jax_trainer):
            # set_epoch not called yet:
            with pytest.raises(ValueError, match="epoch: expected a non-negative int .* got None"):
                trainer.augmented_batch(np.arange(4))
            with pytest.raises(ValueError, match="epoch: expected a non-negative int .* got None"):
                trainer.train_step(np.arange(4))
            with pytest.raises(ValueError, match="epoch: expected a non-negative int .* got -1"):
                trainer.set_epoch(-1)
        flipped = cropped = 0
        for epoch in (0, 1):
            offsets, flips = plan.draw(epoch)
            torch_trainer.set_epoch(epoch)
            jax_trainer.set_epoch(epoch)
            for indices in BatchPlan(n, batch, 3).batches(epoch):  # 8, 8 and a partial 4
                expected = reference_augment(images[indices].astype(dtype), offsets[indices],
                                             flips[indices], 4)
                got_torch = torch_trainer.augmented_batch(indices)
                got_jax = jax_trainer.augmented_batch(indices)
                assert got_torch.dtype == got_jax.dtype == np.dtype(dtype)
                np.testing.assert_array_equal(got_torch, expected)
                np.testing.assert_array_equal(got_jax, expected)
                flipped += int(flips[indices].sum())
                cropped += int((offsets[indices] != 4).any(1).sum())
        assert flipped > 5 and cropped > 20  # the batches really were augmented
        # Without a plan (or with one that does nothing) the batch is the stored images.
        for augment in (None, AugmentPlan(n, (32, 32), 3)):
            plain = (TorchTrainer(CIFAR10, schedule, images, labels, seed=3, dtype=dtype,
                                  batch_size=batch, augment=augment),
                     JaxTrainer(CIFAR10, schedule, images, labels, seed=3, dtype=dtype,
                                batch_size=batch, augment=augment))
            for trainer in plain:
                assert trainer.augment is None
                np.testing.assert_array_equal(trainer.augmented_batch(np.array([4, 0, 9])),
                                              images[[4, 0, 9]].astype(dtype))


def test_trainers_refuse_a_plan_for_other_images():
    images, labels = cifar_like(6)
    schedule = OneCycle(max_lr=0.01, total_steps=10)
    for plan, got in ((AugmentPlan(7, (32, 32), 0, hflip=True), "7 images of 32x32"),
                      (AugmentPlan(6, (28, 28), 0, crop_padding=4), "6 images of 28x28")):
        for trainer in (TorchTrainer, JaxTrainer):
            with pytest.raises(ValueError) as error:
                trainer(CIFAR10, schedule, images, labels, seed=0, batch_size=4, augment=plan)
            assert str(error.value) == f"augment: expected a plan for 6 images of 32x32, got one for {got}"


def train(trainer, batches) -> np.ndarray:
    """Train on ``(epoch, indices)`` pairs, as the demo does; every step's loss."""
    losses = []
    for epoch, indices in batches:
        trainer.set_epoch(epoch)
        losses.append(trainer.train_step(indices)[0])
    return np.array(losses)


def test_float64_training_with_augmentation_follows_the_same_path():
    """Crop + flip on, float64, CIFAR-10 network: torch and JAX from the same start agree
    step by step; the augmentation really changes the trajectory; JAX compiles its step once."""
    n, batch, epochs, seed = 40, 16, 2, 0  # 16 + 16 + 8: a partial batch per epoch
    images, labels = cifar_like(n, seed=1)
    batch_plan = BatchPlan(n, batch, seed)
    steps = epochs * batch_plan.steps_per_epoch
    schedule = OneCycle(max_lr=0.01, total_steps=steps)
    plan = AugmentPlan(n, (32, 32), seed, crop_padding=4, hflip=True)
    schedule_of_batches = [(epoch, b) for epoch in range(epochs) for b in batch_plan.batches(epoch)]
    with jax_precision("float64"):
        torch_trainer = TorchTrainer(CIFAR10, schedule, images, labels, seed=seed, dtype="float64",
                                     batch_size=batch, augment=plan)
        plain_trainer = TorchTrainer(CIFAR10, schedule, images, labels, seed=seed, dtype="float64",
                                     batch_size=batch)
        jax_trainer = JaxTrainer(CIFAR10, schedule, images, labels, seed=seed, dtype="float64",
                                 batch_size=batch, augment=plan)
        initial = canonical_torch(torch_trainer.model)
        start_from_torch_params(jax_trainer, torch_trainer)
        torch_losses = train(torch_trainer, schedule_of_batches)
        plain_losses = train(plain_trainer, schedule_of_batches)
        with CompileLog() as compiled:
            jax_losses = train(jax_trainer, schedule_of_batches)
        assert compiled.names.count("train_step") == 1, compiled.names
        torch_final, jax_final = canonical_torch(torch_trainer.model), canonical_jax(jax_trainer.model)

    assert np.abs(plain_losses - torch_losses).max() > 1e-3 * np.abs(plain_losses).max(), (
        "the augmented trajectory equals the plain one: augmentation was not applied")
    errors = step_relative_errors(jax_losses, torch_losses)
    print(f"\nfloat64 with crop + flip: loss rel. error max {errors.max():.2e} (step {errors.argmax()})")
    assert errors.max() <= FLOAT64_RTOL, f"step {errors.argmax()}: loss relative error {errors.max():.2e}"
    for name, expected in torch_final.items():
        if not name.endswith(".q"):
            assert relative_error(expected, initial[name]) > 1e-4, f"{name} barely moved"
        assert_close(jax_final[name], expected, FLOAT64_RTOL,
                     f"float64 augmented trajectory, final {name} after {steps} steps",
                     kind="trajectory", dtype="float64")
    assert torch.get_default_dtype() == torch.float32 and not jax.config.jax_enable_x64

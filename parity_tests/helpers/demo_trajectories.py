"""The setting of the trajectory tests, and the tools that compare the two trainers' paths.

The Fashion-MNIST network on the first ``N_TRAIN`` real training images (or
generated stand-ins when ``/usr/share/datasets/fashion-mnist`` is missing),
batch ``BATCH``, the reference's ``MAX_LR``; the parameters of both trainers in
one canonical layout (torch's, through the layers' numpy converters); the JAX
trainer started from the torch trainer's parameters. Used by
``test_trajectories.py``, ``test_augment.py`` and ``measure_float32_drift.py``.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from flax import nnx

from demos import build_jax, build_torch, transfer
from demos.batch_plan import BatchPlan
from demos.data import fashion_mnist
from demos.recipe import REFERENCE
from demos.train_jax import JaxTrainer
from demos.train_torch import TorchTrainer
from scs_jax import convert as jax_convert
from scs_torch import convert as torch_convert

__all__ = ["N_TRAIN", "BATCH", "MAX_LR", "SEED", "fashion_available", "load_train_subset",
           "plan_batches", "canonical_torch", "canonical_jax", "start_from_torch_params",
           "step_relative_errors", "l2_relative_error"]

N_TRAIN = 500
BATCH = 32
MAX_LR = REFERENCE.max_lr
SEED = 0
FASHION_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


# ------------------------------------------------------------------ data


def fashion_available() -> bool:
    return all(os.path.isfile(os.path.join(fashion_mnist.DEFAULT_DIR, f)) for f in FASHION_FILES)


def _generated_images(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST-like stand-ins: a textured patch on a zero background, placed by class."""
    rng = np.random.default_rng(1234)
    images = np.zeros((n, 28, 28, 1), np.float32)
    labels = rng.integers(0, 10, n).astype(np.int32)
    for i, label in enumerate(labels):
        row, col = divmod(int(label), 5)  # a 2 x 5 grid of places, one per class
        top, left = 2 + 12 * row + rng.integers(-1, 2), 1 + 5 * col + rng.integers(-1, 2)
        images[i, top:top + 11, left:left + 6, 0] = rng.uniform(0.2, 1.0, (11, 6))
    return np.round(images * 255) / 255, labels


def load_train_subset():
    """(images, labels, source): the first N_TRAIN real training images, or generated ones."""
    if fashion_available():
        # verify_checksum=False: NumPy parse of the IDX files, no TensorFlow
        # (test_data.py checks these arrays equal the verified TFDS ones).
        ds = fashion_mnist.load(fashion_mnist.DEFAULT_DIR, verify_checksum=False)
        return ds.train_images[:N_TRAIN], ds.train_labels[:N_TRAIN], "real"
    images, labels = _generated_images(N_TRAIN)
    return images, labels, "generated"


# ------------------------------------------------------------------ runs


def plan_batches(n: int, steps: int, seed: int) -> list[np.ndarray]:
    """The first ``steps`` batches of the plan, across epochs."""
    plan = BatchPlan(n, BATCH, seed)
    batches, epoch = [], 0
    while len(batches) < steps:
        batches += plan.batches(epoch)
        epoch += 1
    return batches[:steps]


def canonical_torch(model) -> dict[str, np.ndarray]:
    return {f"{i}.{k}": v for i, layer in enumerate(build_torch.parameter_layers(model))
            for k, v in torch_convert.to_numpy(layer).items()}


def canonical_jax(model) -> dict[str, np.ndarray]:
    return {f"{i}.{k}": v for i, layer in enumerate(build_jax.parameter_layers(model))
            for k, v in jax_convert.to_numpy(layer).items()}


def start_from_torch_params(jax_trainer: JaxTrainer, torch_trainer: TorchTrainer) -> None:
    """Put ``torch_trainer``'s parameters into ``jax_trainer`` (through demos.transfer)."""
    model = transfer.torch_to_jax(torch_trainer.model, jax_trainer.model)
    graphdef, params = nnx.split(model)
    assert graphdef == jax_trainer.graphdef
    assert jax.tree.structure(params) == jax.tree.structure(jax_trainer.params)
    jax_trainer.params = params


def step_relative_errors(actual: np.ndarray, expected: np.ndarray) -> np.ndarray:
    assert actual.shape == expected.shape and np.all(np.isfinite(actual)) and np.all(np.isfinite(expected))
    return np.abs(actual - expected) / np.abs(expected)


def l2_relative_error(actual, expected) -> float:
    a, e = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.linalg.norm(a - e) / max(np.linalg.norm(e), np.finfo(np.float64).tiny))

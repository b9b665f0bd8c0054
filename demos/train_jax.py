"""The JAX training loop of the demos: one jitted optimizer step per batch, evaluation.

The twin of :mod:`demos.train_torch`, with the same methods in the same order,
and the demos' only adapter to JAX (:class:`demos.trainers.Trainer`): its
device and its checkpoint state (orbax, ``state/``); it adds no flags and no
settings. Never imports torch. The model is split once (``nnx.split``) and the step is a
pure function of (parameters, optimizer state) under ``jax.jit``, compiled once:
every batch has the same shape, the last partial batch being padded and
masked out of the loss. With augmentation (:mod:`demos.augment`) the step
also takes the batch's crop/flip gather indices, fixed-shape arrays padded
like the batch, and gathers the augmented images on the device inside the
compiled step; whether it does is fixed at construction, so it is still
compiled once. The training set lives on the default device
(``jax.device_put``); nothing assumes a CPU.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from .architectures import Architecture
from .augment import AugmentPlan, active_plan, check_epoch
from .build_jax import build_jax_model, canonical_parameters, layer_from_numpy, parameter_layers
from .losses import check_label_smoothing, smoothed_cross_entropy
from .optim import OneCycle, make_optax_optimizer
from .trainers import group_canonical

__all__ = ["JaxTrainer", "default_device"]

_DTYPES = ("float32", "float64")


def default_device() -> str:
    """The platform and kind of JAX's default device, e.g. ``"cpu"`` or ``"gpu NVIDIA H100"``."""
    device = jax.devices()[0]
    return f"{device.platform} {getattr(device, 'device_kind', '')}".strip()


def _gather_batch(images, index, rows, cols, padding: int):
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


class JaxTrainer:
    """Trains one network with Adam + one-cycle, stepped every batch (the reference's recipe).

    Args:
        architecture: the network to build (:mod:`demos.architectures`).
        schedule: the one-cycle settings; it fixes the number of steps.
        train_images: ``(N, H, W, C)`` float in [0, 1].
        train_labels: ``(N,)`` integer class labels.
        seed: seeds ``nnx.Rngs`` from which the parameters are drawn.
        dtype: ``"float32"`` or ``"float64"`` (needs ``jax_enable_x64``).
        batch_size: the fixed batch shape of the compiled steps (training and
            evaluation); smaller batches are padded to it and masked.
        augment: the run's random crops / flips (:class:`demos.augment.AugmentPlan`,
            built for these images); ``None`` or a plan that does nothing: no
            augmentation. When it is enabled, :meth:`set_epoch` must be called
            before :meth:`train_step`.
        label_smoothing: ε of the training loss (:func:`demos.losses.smoothed_cross_entropy`,
            ``optax.smooth_labels``; 0: plain cross-entropy); :meth:`evaluate` is plain.

    Raises:
        ValueError: a bad ``dtype`` (or float64 without x64) or ``label_smoothing``,
            or an ``augment`` plan made for other images.
    """

    framework = "jax"
    STATE_NAME = "state"
    takes_device = False

    def __init__(
        self,
        architecture: Architecture,
        schedule: OneCycle,
        train_images: np.ndarray,
        train_labels: np.ndarray,
        *,
        seed: int,
        dtype: str = "float32",
        batch_size: int,
        augment: AugmentPlan | None = None,
        label_smoothing: float = 0.0,
    ):
        self.label_smoothing = check_label_smoothing(label_smoothing)
        if dtype not in _DTYPES:
            raise ValueError(f"dtype: expected one of {list(_DTYPES)}, got {dtype!r}")
        if dtype == "float64" and not jax.config.jax_enable_x64:
            raise ValueError("dtype: 'float64' needs jax.config.update('jax_enable_x64', True) first")
        self.dtype = jnp.dtype(dtype)
        self.batch_size = int(batch_size)
        self.augment = active_plan(augment, train_images)
        self.epoch: int | None = None
        model = build_jax_model(architecture, rngs=nnx.Rngs(seed), param_dtype=self.dtype)
        self.graphdef, self.params = nnx.split(model)
        self.tx = make_optax_optimizer(schedule)
        self.opt_state = self.tx.init(self.params)
        self.images = jax.device_put(np.asarray(train_images, self.dtype))
        self.labels = jax.device_put(np.asarray(train_labels, np.int32))
        self._eval_cache: tuple = (None, None)

        graphdef, tx, smoothing = self.graphdef, self.tx, self.label_smoothing
        padding = 0 if self.augment is None else self.augment.crop_padding

        def gather_batch(images, index, rows, cols):
            return _gather_batch(images, index, rows, cols, padding)

        def train_step(params, opt_state, images, labels, index, rows, cols, mask):
            x, y = gather_batch(images, index, rows, cols), labels[index]
            (loss, correct), grads = jax.value_and_grad(
                lambda p: _masked_loss(graphdef, p, x, y, mask, smoothing), has_aux=True
            )(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss, correct

        def eval_step(params, x, y, mask):
            logits = nnx.merge(graphdef, params)(x)
            losses = optax.softmax_cross_entropy_with_integer_labels(logits, y)
            return jnp.sum(losses * mask), jnp.sum((jnp.argmax(logits, -1) == y) * mask)

        self._batch_images = jax.jit(gather_batch)
        self._train_step = jax.jit(train_step, donate_argnums=(0, 1))
        self._eval_step = jax.jit(eval_step)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """No flags of its own: JAX picks its default device."""

    @classmethod
    def from_args(cls, args: argparse.Namespace, architecture: Architecture, schedule: OneCycle,
                  train_images: np.ndarray, train_labels: np.ndarray, *, seed: int,
                  augment: AugmentPlan) -> JaxTrainer:
        """The trainer of a demo's command line."""
        return cls(architecture, schedule, train_images, train_labels, seed=seed,
                   batch_size=args.batch_size, augment=augment,
                   label_smoothing=args.label_smoothing)

    @property
    def device_name(self) -> str:
        """JAX's default device (:func:`default_device`), where the training set lives."""
        return default_device()

    def framework_settings(self) -> dict:
        """None: the JAX runs' settings are the recipe's."""
        return {}

    @property
    def model(self) -> nnx.Module:
        """The network with the current parameters (a fresh NNX object)."""
        return nnx.merge(self.graphdef, self.params)

    def _pad(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(indices)
        if not 0 < n <= self.batch_size:
            raise ValueError(f"indices: expected 1 to {self.batch_size} examples, got {n}")
        index = np.zeros(self.batch_size, np.int32)
        index[:n] = indices
        mask = np.zeros(self.batch_size, self.dtype)
        mask[:n] = 1
        return index, mask

    def _augment_indices(self, indices: np.ndarray):
        """The padded batch's int32 ``(batch_size, H)``, ``(batch_size, W)`` gather indices.

        ``(None, None)`` without augmentation.
        """
        if self.augment is None:
            return None, None
        # epoch None (set_epoch not called): batch_indices raises. Padding rows
        # keep the uncropped window (any valid index would do: they are masked out).
        rows, cols = self.augment.batch_indices(np.asarray(indices), self.epoch)
        pad = self.augment.crop_padding
        n, height, width = len(rows), self.augment.height, self.augment.width
        rows_full = np.tile(np.arange(pad, pad + height, dtype=np.int32), (self.batch_size, 1))
        cols_full = np.tile(np.arange(pad, pad + width, dtype=np.int32), (self.batch_size, 1))
        rows_full[:n], cols_full[:n] = rows, cols
        return rows_full, cols_full

    def set_epoch(self, epoch: int) -> None:
        """The 0-based epoch the next training steps belong to (it picks their augmentation).

        Raises:
            ValueError: ``epoch`` is not a non-negative int.
        """
        self.epoch = check_epoch(epoch)

    def augmented_batch(self, indices: np.ndarray) -> np.ndarray:
        """The images :meth:`train_step` would train on for ``indices`` now, as NHWC numpy.

        Returns:
            ``(B, H, W, C)`` in the trainer's dtype: the stored images, cropped and
            flipped on the device as ``augment`` says for the epoch of
            :meth:`set_epoch` (unchanged without augmentation), by the same
            gather the compiled training step runs.

        Raises:
            ValueError: augmentation is on and no epoch was set, or bad ``indices``.
        """
        index, _ = self._pad(indices)
        rows, cols = self._augment_indices(indices)
        return np.asarray(self._batch_images(self.images, index, rows, cols))[: len(indices)].copy()

    def train_step(self, indices: np.ndarray) -> tuple[float, int]:
        """One Adam step on the examples ``indices``; returns (mean loss, correct predictions).

        With augmentation the images are those of :meth:`augmented_batch`.

        Raises:
            ValueError: augmentation is on and no epoch was set (:meth:`set_epoch`).
        """
        index, mask = self._pad(indices)
        rows, cols = self._augment_indices(indices)
        self.params, self.opt_state, loss, correct = self._train_step(
            self.params, self.opt_state, self.images, self.labels, index, rows, cols, mask
        )
        return float(loss), int(correct)

    def evaluate(self, images: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
        """Mean cross-entropy and accuracy over a whole set (e.g. the test set)."""
        if self._eval_cache[0] is not images:
            self._eval_cache = (
                images,
                (jax.device_put(np.asarray(images, self.dtype)), np.asarray(labels, np.int32)),
            )
        x_all, y_all = self._eval_cache[1]
        n = len(y_all)
        loss_sum, correct = 0.0, 0
        for start in range(0, n, self.batch_size):
            index, mask = self._pad(np.arange(start, min(start + self.batch_size, n)))
            batch_loss, batch_correct = self._eval_step(
                self.params, x_all[index], jax.device_put(y_all[index]), mask
            )
            loss_sum += float(batch_loss)
            correct += int(batch_correct)
        return loss_sum / n, correct / n

    @classmethod
    def initial_parameters(cls, architecture: Architecture, seed: int) -> dict[str, np.ndarray]:
        """The float32 parameters a run with ``seed`` starts from, canonical numpy.

        Keys ``"<i>.<name>"``: the ``i``-th layer with parameters and the
        canonical name (:mod:`scs_jax.convert`); values in torch's layout.
        """
        model = build_jax_model(architecture, rngs=nnx.Rngs(seed))
        return canonical_parameters(model)

    def load_parameters(self, parameters: dict[str, np.ndarray]) -> None:
        """Start from ``parameters`` (:meth:`initial_parameters`' form, any framework's) instead.

        The optimizer state is made afresh for them (Adam's starts at zero).

        Raises:
            ValueError: ``parameters`` name other layers or tensors, or shapes differ.
        """
        model = self.model
        layers = parameter_layers(model)
        for layer, arrays in zip(layers, group_canonical(parameters, len(layers))):
            layer_from_numpy(layer, arrays)
        self.graphdef, self.params = nnx.split(model)
        self.opt_state = self.tx.init(self.params)

    def parameters_numpy(self) -> dict[str, np.ndarray]:
        """Every parameter as numpy, keyed by its path in the NNX graph."""
        flat = nnx.to_flat_state(self.params)
        return {".".join(map(str, path)): np.asarray(v[...]) for path, v in flat}

    def save_state(self, folder: Path) -> None:
        """orbax ``StandardCheckpointer`` of ``{"params": the nnx.State, "opt_state": the optax
        state}`` (the schedule's step count is in the latter) into ``folder / "state"``."""
        import orbax.checkpoint as ocp

        with ocp.StandardCheckpointer() as checkpointer:
            checkpointer.save(folder.absolute() / JaxTrainer.STATE_NAME,
                              {"params": self.params, "opt_state": self.opt_state})
            checkpointer.wait_until_finished()

    def load_state(self, folder: Path) -> None:
        """Put what :meth:`save_state` wrote into this trainer (built with the same settings)."""
        import orbax.checkpoint as ocp

        # This trainer's own state gives the tree structure, shapes, dtypes and
        # devices to restore into.
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct,
                              {"params": self.params, "opt_state": self.opt_state})
        with ocp.StandardCheckpointer() as checkpointer:
            state = checkpointer.restore(folder.absolute() / JaxTrainer.STATE_NAME, target)
        self.params, self.opt_state = state["params"], state["opt_state"]

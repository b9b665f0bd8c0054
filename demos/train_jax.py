"""The JAX training loop of the demos: whole epochs in one compiled call, or one call per step.

The twin of :mod:`demos.train_torch`, with the same methods in the same order,
and the demos' only adapter to JAX (:class:`demos.trainers.Trainer`): its
flags (``--step-loop``, ``--epoch-scan``, ``--steps-per-call``), its device, its recorded
settings (``jax_epoch_scan``, ``jax_steps_per_call``) and its checkpoint state
(orbax, ``state/``). Never imports torch. The model is split once
(``nnx.split``) and the step is a pure function of (parameters, optimizer
state) (:mod:`demos.jax_steps`) under ``jax.jit``, compiled once: every batch
has the same shape, the last partial batch being padded and masked out of
the loss. With ``epoch_scan`` (the constructor's default; the demos' on an
accelerator, :func:`default_epoch_scan`) :meth:`JaxTrainer.train_steps` runs a chunk of steps
(the whole epoch on an accelerator) as one ``lax.scan``, with one host
synchronisation per chunk, and :meth:`JaxTrainer.evaluate` the whole set as
another; ``epoch_scan=False`` (``--step-loop``) calls the jitted step once per
batch instead. Both compute the same numbers. With augmentation
(:mod:`demos.augment`) the step also takes the batch's crop/flip gather
indices, fixed-shape arrays padded like the batch, and gathers the augmented
images on the device inside the compiled step; whether it does is fixed at
construction, so it is still compiled once. The training set lives on the
default device (``jax.device_put``); nothing assumes a CPU.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .architectures import Architecture
from .augment import AugmentPlan, active_plan, check_epoch
from .build_jax import build_jax_model, canonical_parameters, layer_from_numpy, parameter_layers
from .cli import positive_int
from .jax_steps import (augment_chunk, augment_indices, batch_ranges, gather_batch, make_eval_step,
                         make_train_step, padded_chunks, scan_eval, scan_steps, unrolled_chunks)
from .losses import check_label_smoothing
from .optim import OneCycle, make_optax_optimizer
from .trainers import group_canonical

__all__ = ["JaxTrainer", "default_device", "default_epoch_scan", "default_steps_per_call", "scan_options",
           "check_dtype"]

_DTYPES = ("float32", "float64")


def default_device() -> str:
    """The platform and kind of JAX's default device, e.g. ``"cpu"`` or ``"gpu NVIDIA H100"``."""
    device = jax.devices()[0]
    return f"{device.platform} {getattr(device, 'device_kind', '')}".strip()


def scan_options(args: argparse.Namespace) -> dict:
    """``epoch_scan`` and ``steps_per_call`` from :meth:`JaxTrainer.add_arguments`' flags
    (neither ``--step-loop`` nor ``--epoch-scan``: :func:`default_epoch_scan`)."""
    if getattr(args, "step_loop", False):
        scan = False
    else:
        scan = getattr(args, "epoch_scan", False) or default_epoch_scan()
    chunk = getattr(args, "steps_per_call", None)
    return {"epoch_scan": scan, "steps_per_call": (chunk or default_steps_per_call()) if scan else None}


def default_epoch_scan() -> bool:
    """The demos' default for one run: the epoch scan on an accelerator, the step loop on a CPU.

    The reference runs were made with the step loop on a CPU; there the epoch
    scan's chunks are written out (:func:`demos.jax_steps.unrolled_chunks`) and
    measured 0.76x the step loop's time per step (``benchmarks/runs_per_hour.py``,
    ``results/benchmarks/runs_per_hour_2026-12-02_0350.txt``); in float32 the two
    round differently (``test_epoch_scan.py``).
    """
    return jax.devices()[0].platform != "cpu"


def default_steps_per_call() -> int | None:
    """The epoch scan's chunk: ``None`` (the whole epoch) on an accelerator, 8 steps on a CPU.

    A CPU takes seconds per step at batch 1024, so a chunk keeps the progress
    bar moving at no measurable cost; an accelerator's epoch is a fraction of
    a second, where each host synchronisation counts.
    """
    return 8 if jax.devices()[0].platform == "cpu" else None


def check_dtype(dtype: str):
    """``dtype`` as a ``jnp.dtype``.

    Raises:
        ValueError: not ``"float32"``/``"float64"``, or float64 without ``jax_enable_x64``.
    """
    if dtype not in _DTYPES:
        raise ValueError(f"dtype: expected one of {list(_DTYPES)}, got {dtype!r}")
    if dtype == "float64" and not jax.config.jax_enable_x64:
        raise ValueError("dtype: 'float64' needs jax.config.update('jax_enable_x64', True) first")
    return jnp.dtype(dtype)


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
        epoch_scan: :meth:`train_steps` and :meth:`evaluate` as one ``lax.scan``
            per call (default), or one jitted step per batch (``False``).
        steps_per_call: the scan's compiled length; the runner hands
            :meth:`train_steps` at most this many batches at once. ``None``:
            the whole epoch (compiled for the first call's length).

    Raises:
        ValueError: a bad ``dtype`` (or float64 without x64) or ``label_smoothing``,
            an ``augment`` plan made for other images, or ``steps_per_call`` < 1.
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
        epoch_scan: bool = True,
        steps_per_call: int | None = None,
    ):
        if steps_per_call is not None and (not isinstance(steps_per_call, int) or steps_per_call < 1):
            raise ValueError(f"steps_per_call: expected a positive int or None, got {steps_per_call!r}")
        self.label_smoothing = check_label_smoothing(label_smoothing)
        self.dtype = check_dtype(dtype)
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

        self.epoch_scan = bool(epoch_scan)
        self.steps_per_call = steps_per_call if self.epoch_scan else 1
        padding = 0 if self.augment is None else self.augment.crop_padding
        step = make_train_step(self.graphdef, self.tx, padding, self.label_smoothing)
        eval_step = make_eval_step(self.graphdef)
        self._batch_images = jax.jit(lambda images, index, rows, cols: gather_batch(
            images, index, rows, cols, padding))
        self._train_step = jax.jit(step, donate_argnums=(0, 1))
        self._eval_step = jax.jit(eval_step)
        # short chunks written out on a CPU (jax_steps.unrolled_chunks); whole epochs scanned
        unrolled = unrolled_chunks() and self.steps_per_call is not None
        self._train_scan = jax.jit(scan_steps(step, unrolled=unrolled), donate_argnums=(0, 1))
        self._eval_scan = jax.jit(scan_eval(eval_step))

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """``--step-loop`` / ``--epoch-scan`` and ``--steps-per-call``; JAX picks its default device."""
        how = parser.add_mutually_exclusive_group()
        how.add_argument("--step-loop", action="store_true",
                         help="one jitted call per training step (the default on a CPU, where "
                              "XLA:CPU runs the scan's steps ~4x slower)")
        how.add_argument("--epoch-scan", action="store_true",
                         help="each chunk of training steps and each evaluation pass as one "
                              "compiled lax.scan, one host synchronisation per chunk (the default "
                              "on an accelerator); the same numbers as --step-loop")
        parser.add_argument("--steps-per-call", type=positive_int, default=None,
                            help="training steps per compiled call of the epoch scan: the progress "
                                 "bar moves once per call (default: 8 on a CPU, the whole epoch "
                                 "on an accelerator)")

    @classmethod
    def from_args(cls, args: argparse.Namespace, architecture: Architecture, schedule: OneCycle,
                  train_images: np.ndarray, train_labels: np.ndarray, *, seed: int,
                  augment: AugmentPlan) -> JaxTrainer:
        """The trainer of a demo's command line (:meth:`add_arguments`' flags included)."""
        return cls(architecture, schedule, train_images, train_labels, seed=seed,
                   batch_size=args.batch_size, augment=augment,
                   label_smoothing=args.label_smoothing, **scan_options(args))

    @property
    def device_name(self) -> str:
        """JAX's default device (:func:`default_device`), where the training set lives."""
        return default_device()

    def framework_settings(self) -> dict:
        """How the steps were run: ``{"jax_epoch_scan": bool, "jax_steps_per_call": int or None}``
        (never compared: the same numbers either way)."""
        return {"jax_epoch_scan": self.epoch_scan,
                "jax_steps_per_call": self.steps_per_call if self.epoch_scan else None}

    @property
    def model(self) -> nnx.Module:
        """The network with the current parameters (a fresh NNX object)."""
        return nnx.merge(self.graphdef, self.params)

    def _pad(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        index, mask, _ = padded_chunks([np.asarray(indices)], self.batch_size, 1, self.dtype)
        return index[0], mask[0]

    def _augment_indices(self, indices: np.ndarray):
        """:func:`augment_indices` of this run's plan, ``(None, None)`` without augmentation."""
        if self.augment is None:
            return None, None
        return augment_indices(self.augment, indices, self.epoch, self.batch_size)

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

    def train_steps(self, batches: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Consecutive Adam steps on ``batches`` (at most :attr:`steps_per_call`).

        Returns:
            float64 ``(S,)`` mean losses and int64 ``(S,)`` correct predictions, one per batch:
            one compiled ``lax.scan`` and one host synchronisation (``epoch_scan``), else
            :meth:`train_step` per batch. A non-finite loss does not stop the chunk.

        Raises:
            ValueError: augmentation is on and no epoch was set, or bad ``batches``.
        """
        if not self.epoch_scan:
            results = [self.train_step(indices) for indices in batches]
            return (np.array([loss for loss, _ in results], np.float64),
                    np.array([correct for _, correct in results], np.int64))
        length = self.steps_per_call or self._epoch_length(len(batches))
        index, mask, active = padded_chunks(batches, self.batch_size, length, self.dtype)
        rows, cols = augment_chunk(self.augment, batches, self.epoch, self.batch_size, length)
        self.params, self.opt_state, losses, corrects = self._train_scan(
            self.params, self.opt_state, self.images, self.labels, index, rows, cols, mask, active)
        count = len(batches)
        return (np.asarray(losses, np.float64)[:count], np.asarray(corrects, np.int64)[:count])

    def _epoch_length(self, count: int) -> int:
        """Without ``steps_per_call``: the first call's length, kept (one compiled shape)."""
        if getattr(self, "_scan_length", None) is None:
            self._scan_length = count
        return self._scan_length

    def _device_set(self, images: np.ndarray, labels: np.ndarray):
        """The evaluation set on the device, cached for the last set asked (the test set)."""
        if self._eval_cache[0] is not images:
            self._eval_cache = (
                images,
                (jax.device_put(np.asarray(images, self.dtype)), jax.device_put(np.asarray(labels, np.int32))),
            )
        return self._eval_cache[1]

    def evaluate(self, images: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
        """Mean cross-entropy and accuracy over a whole set (e.g. the test set).

        One compiled scan over the set's batches (``epoch_scan``), else one call per batch;
        the per-batch sums are added on the host in order, the same numbers either way.
        """
        x_all, y_all = self._device_set(images, labels)
        n = len(labels)
        batches = batch_ranges(n, self.batch_size)
        index, mask, _ = padded_chunks(batches, self.batch_size, len(batches), self.dtype)
        if self.epoch_scan:
            sums, corrects = (np.asarray(a).tolist() for a in self._eval_scan(self.params, x_all, y_all, index, mask))
        else:
            results = [self._eval_step(self.params, x_all[i], y_all[i], m) for i, m in zip(index, mask)]
            sums, corrects = [a for a, _ in results], [b for _, b in results]
        loss_sum, correct = 0.0, 0
        for batch_loss, batch_correct in zip(sums, corrects):
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

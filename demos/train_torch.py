"""The PyTorch training loop of the demos: one optimizer step per batch, evaluation.

The twin of :mod:`demos.train_jax`, with the same methods in the same order,
and the demos' only adapter to torch (:class:`demos.trainers.Trainer`): its
command-line flags (``--device``, ``--compile``), its device, its recorded
setting (``torch_compile``) and its checkpoint state (``state.pt``). Never
imports JAX.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .allocator import keep_freed_memory
from .architectures import Architecture
from .augment import AugmentPlan, active_plan, check_epoch
from .build_torch import build_torch_model, canonical_parameters, layer_from_numpy, parameter_layers
from .losses import check_label_smoothing
from .optim import OneCycle, make_torch_optimizer
from .trainers import group_canonical

__all__ = ["TorchTrainer", "DTYPES", "default_device", "parse_device", "gather_batch"]

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def default_device() -> str:
    """``"cuda"`` when a GPU is visible to torch, else ``"cpu"``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def parse_device(text: str) -> str:
    """``--device``: a torch device string that exists here (checked before any data is loaded)."""
    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"expected a torch device such as cpu or cuda:0, got {text!r}") from None
    if device.type == "meta":
        raise argparse.ArgumentTypeError("expected a device that computes (cpu, cuda, ...), got 'meta'")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: this torch build sees no CUDA device")
    if device.type not in ("cpu", "cuda") and not getattr(torch, device.type, None):
        raise argparse.ArgumentTypeError(f"{text!r}: this torch build has no {device.type} backend")
    return text


def gather_batch(images: torch.Tensor, labels: torch.Tensor, indices: np.ndarray,
                 augment: AugmentPlan | None, epoch: int | None, memory_format=torch.contiguous_format
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """``images[indices]`` (NCHW, on their device), cropped and flipped as ``augment`` says for
    ``epoch`` (``None``: no augmentation), in ``memory_format``; and ``labels[indices]``.

    Raises:
        ValueError: augmentation without an epoch (``set_epoch`` not called), or bad ``indices``.
    """
    device = images.device
    index = torch.from_numpy(np.asarray(indices, np.int64)).to(device)
    x = images[index]
    if augment is not None:
        rows, cols = (torch.from_numpy(a).to(device) for a in augment.batch_indices(np.asarray(indices), epoch))
        pad = augment.crop_padding
        nhwc = F.pad(x.permute(0, 2, 3, 1), (0, 0, pad, pad, pad, pad))
        batch = torch.arange(len(index), device=device)[:, None, None]
        x = nhwc[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
        x = x.contiguous(memory_format=memory_format)
    return x, labels[index]


class TorchTrainer:
    """Trains one network with Adam + one-cycle, stepped every batch (the reference's recipe).

    Args:
        architecture: the network to build (:mod:`demos.architectures`).
        schedule: the one-cycle settings; it fixes the number of steps.
        train_images: ``(N, H, W, C)`` float in [0, 1] (NHWC, as the loader returns).
        train_labels: ``(N,)`` integer class labels.
        seed: seeds ``torch.manual_seed`` before the parameters are drawn.
        dtype: ``"float32"`` or ``"float64"``.
        batch_size: examples per evaluation batch (training batches come from the plan).
        device: torch device; default GPU when available.
        compile_kernels: fuse the SCS layers' elementwise work with ``torch.compile``
            (:mod:`scs_torch.compiled`, process-wide, needs a C++ compiler, tens
            of seconds of compilation at the first step); ``None`` reads the
            environment variable ``SCS_TORCH_COMPILE`` (``1`` enables). The
            resolved choice is kept as :attr:`compile_kernels`.
        compile_step: compile the network's forward and backward whole with
            ``torch.compile(mode="reduce-overhead")`` (CUDA graphs on a GPU: no per-step
            launch overhead) and synchronise once per :meth:`train_steps` call; the
            same maths up to float rounding (``--compile-step``).
        augment: the run's random crops / flips (:class:`demos.augment.AugmentPlan`,
            built for these images); ``None`` or a plan that does nothing: no
            augmentation. When it is enabled, :meth:`set_epoch` must be called
            before :meth:`train_step`.
        label_smoothing: ε of the training loss, ``F.cross_entropy(...,
            label_smoothing=ε)`` (0: plain cross-entropy); :meth:`evaluate` is plain.

    Raises:
        ValueError: a bad ``dtype`` or ``label_smoothing``, or an ``augment`` plan
            made for other images.

    On CPU the model and the images use the channels-last memory format
    (NHWC strides): the convolutions, max-pooling and the SCS layers' pooling
    run faster in it (measured ~1.5x for the whole step, both networks).
    """

    framework = "torch"
    STATE_NAME = "state.pt"
    takes_device = True
    #: The runner hands :meth:`train_steps` one batch at a time: each step is its own call anyway.
    steps_per_call = 1

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
        device: str | None = None,
        compile_kernels: bool | None = None,
        augment: AugmentPlan | None = None,
        label_smoothing: float = 0.0,
        compile_step: bool = False,
    ):
        if dtype not in DTYPES:
            raise ValueError(f"dtype: expected one of {sorted(DTYPES)}, got {dtype!r}")
        self.label_smoothing = check_label_smoothing(label_smoothing)
        self.dtype = DTYPES[dtype]
        self.batch_size = int(batch_size)
        self.augment = active_plan(augment, train_images)
        self.epoch: int | None = None
        self.device = torch.device(device or default_device())
        if compile_kernels is None:
            compile_kernels = os.environ.get("SCS_TORCH_COMPILE", "") == "1"
        self.compile_kernels = bool(compile_kernels)
        if compile_kernels:
            import scs_torch.compiled

            scs_torch.compiled.enable()
        self.memory_format = torch.channels_last if self.device.type == "cpu" else torch.contiguous_format
        if self.device.type == "cpu":
            keep_freed_memory()  # each step's tensors reused, not page-faulted in anew
        # Drawn on the CPU whatever the device: a seed gives the same network everywhere
        # (CUDA's generator draws other numbers), the one initial_parameters returns.
        torch.manual_seed(seed)
        self.model = build_torch_model(architecture, dtype=self.dtype)
        self.model.to(device=self.device, memory_format=self.memory_format)
        self.compile_step = bool(compile_step)
        # The network's forward and backward compiled whole; on a GPU, replayed as CUDA graphs.
        self._forward = (torch.compile(self.model, mode="reduce-overhead", dynamic=False)
                         if self.compile_step else self.model)
        if self.compile_step:  # the runner hands over whole epochs: one host synchronisation each
            self.steps_per_call = None
        self.optimizer, self.scheduler = make_torch_optimizer(self.model.parameters(), schedule)
        self.images = self._to_device(train_images)
        self.labels = torch.from_numpy(np.asarray(train_labels, np.int64)).to(self.device)
        self._eval_cache: tuple = (None, None)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """``--device`` and ``--compile``."""
        parser.add_argument("--device", type=parse_device, default=None,
                            help="torch device (default: cuda if available, else cpu)")
        parser.add_argument("--compile", action="store_true",
                            help="fuse the SCS layers' elementwise work with torch.compile "
                                 "(scs_torch.compiled; needs a C++ compiler, tens of seconds of "
                                 "compilation at the first step, then faster steps); the same "
                                 "maths up to float rounding, so a run may be resumed with or "
                                 "without it (default: off, unless SCS_TORCH_COMPILE=1)")
        parser.add_argument("--compile-step", action="store_true",
                            help="compile the network's forward and backward whole with "
                                 "torch.compile(mode='reduce-overhead'): CUDA graphs on a GPU, which "
                                 "remove the per-step launch overhead, and one host synchronisation "
                                 "per epoch; needs a C++ compiler on a CPU, where it gains little. "
                                 "The same maths up to float rounding, recorded as "
                                 "torch_compile_step; a run may be resumed with or without it")

    @classmethod
    def from_args(cls, args: argparse.Namespace, architecture: Architecture, schedule: OneCycle,
                  train_images: np.ndarray, train_labels: np.ndarray, *, seed: int,
                  augment: AugmentPlan) -> TorchTrainer:
        """The trainer of a demo's command line (:meth:`add_arguments`' flags included)."""
        # Without --compile, None leaves the choice to SCS_TORCH_COMPILE.
        return cls(architecture, schedule, train_images, train_labels, seed=seed,
                   batch_size=args.batch_size, device=args.device,
                   compile_kernels=True if args.compile else None, augment=augment,
                   compile_step=getattr(args, "compile_step", False),
                   label_smoothing=args.label_smoothing)

    @property
    def device_name(self) -> str:
        """The torch device, e.g. ``"cpu"`` or ``"cuda"``."""
        return str(self.device)

    def framework_settings(self) -> dict:
        """``{"torch_compile": whether the fused kernels run, "torch_compile_step": whether the
        whole step is compiled}`` (they change rounding, not the maths)."""
        return {"torch_compile": self.compile_kernels, "torch_compile_step": self.compile_step}

    def _to_device(self, images: np.ndarray) -> torch.Tensor:
        nchw = np.ascontiguousarray(np.asarray(images).transpose(0, 3, 1, 2))
        return torch.from_numpy(nchw).to(self.device, self.dtype).contiguous(memory_format=self.memory_format)

    def _batch(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """The (augmented) training images ``(B, C, H, W)`` and labels of ``indices``, on the device."""
        return gather_batch(self.images, self.labels, indices, self.augment, self.epoch, self.memory_format)

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
            :meth:`set_epoch` (unchanged without augmentation).

        Raises:
            ValueError: augmentation is on and no epoch was set, or bad ``indices``.
        """
        x, _ = self._batch(indices)
        return x.permute(0, 2, 3, 1).cpu().numpy().copy()

    def train_step(self, indices: np.ndarray) -> tuple[float, int]:
        """One Adam step on the examples ``indices``; returns (mean loss, correct predictions).

        With augmentation the images are those of :meth:`augmented_batch`.

        Raises:
            ValueError: augmentation is on and no epoch was set (:meth:`set_epoch`).
        """
        loss, correct = self._device_step(indices)
        return loss.item(), int(correct)

    def _device_step(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`train_step` without the host synchronisation: the loss and correct count on the device."""
        x, y = self._batch(indices)
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        if self.compile_step:
            torch.compiler.cudagraph_mark_step_begin()
        logits = self._forward(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return loss.detach(), (logits.argmax(1) == y).sum()

    def train_steps(self, batches: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`train_step` on each of ``batches``: float64 ``(S,)`` losses, int64 ``(S,)`` correct
        counts; with ``compile_step``, one host synchronisation for them all."""
        if not self.compile_step:
            results = [self.train_step(indices) for indices in batches]
            return (np.array([loss for loss, _ in results], np.float64),
                    np.array([correct for _, correct in results], np.int64))
        results = [self._device_step(indices) for indices in batches]
        return (torch.stack([loss for loss, _ in results]).cpu().numpy().astype(np.float64),
                torch.stack([correct for _, correct in results]).cpu().numpy().astype(np.int64))

    @torch.no_grad()
    def evaluate(self, images: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
        """Mean cross-entropy and accuracy over a whole set (e.g. the test set)."""
        if self._eval_cache[0] is not images:
            self._eval_cache = (
                images,
                (self._to_device(images), torch.from_numpy(np.asarray(labels, np.int64)).to(self.device)),
            )
        x_all, y_all = self._eval_cache[1]
        self.model.eval()
        loss_sum, correct = 0.0, 0
        for start in range(0, len(y_all), self.batch_size):
            logits = self.model(x_all[start : start + self.batch_size])
            y = y_all[start : start + self.batch_size]
            loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
            correct += int((logits.argmax(1) == y).sum())
        return loss_sum / len(y_all), correct / len(y_all)

    @classmethod
    def initial_parameters(cls, architecture: Architecture, seed: int) -> dict[str, np.ndarray]:
        """The float32 parameters a run with ``seed`` starts from, canonical numpy.

        Keys ``"<i>.<name>"``: the ``i``-th layer with parameters and the
        canonical name (:mod:`scs_torch.convert`); values in torch's layout.
        """
        torch.manual_seed(seed)
        return canonical_parameters(build_torch_model(architecture))

    def load_parameters(self, parameters: dict[str, np.ndarray]) -> None:
        """Start from ``parameters`` (:meth:`initial_parameters`' form, any framework's) instead.

        Raises:
            ValueError: ``parameters`` name other layers or tensors, or shapes differ.
        """
        layers = parameter_layers(self.model)
        grouped = group_canonical(parameters, len(layers))
        for layer, arrays in zip(layers, grouped):
            layer_from_numpy(layer, arrays)

    def parameters_numpy(self) -> dict[str, np.ndarray]:
        """Every parameter as numpy, keyed by torch's state-dict names."""
        return {name: p.detach().cpu().numpy().copy() for name, p in self.model.named_parameters()}

    def save_state(self, folder: Path) -> None:
        """``torch.save`` of the model, optimizer and scheduler state dicts and the RNG states
        into ``folder / "state.pt"`` (a new file)."""
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
        }
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        with open(folder / TorchTrainer.STATE_NAME, "xb") as f:
            torch.save(state, f)

    def load_state(self, folder: Path) -> None:
        """Put what :meth:`save_state` wrote into this trainer (built with the same settings)."""
        state = torch.load(folder / TorchTrainer.STATE_NAME, map_location=self.device, weights_only=True)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"].cpu())
        if "cuda_rng" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"].cpu(), self.device)

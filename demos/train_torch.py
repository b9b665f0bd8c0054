"""The PyTorch training loop of the demos: one optimizer step per batch, evaluation.

The twin of :mod:`demos.train_jax`, with the same methods in the same order.
Never imports JAX.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F

from .architectures import Architecture
from .build_torch import build_torch_model
from .optim import OneCycle, make_torch_optimizer

__all__ = ["TorchTrainer", "default_device"]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def default_device() -> str:
    """``"cuda"`` when a GPU is visible to torch, else ``"cpu"``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


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
            environment variable ``SCS_TORCH_COMPILE`` (``1`` enables).

    On CPU the model and the images use the channels-last memory format
    (NHWC strides): the convolutions, max-pooling and the SCS layers' pooling
    run faster in it (measured ~1.5x for the whole step, both networks).
    """

    framework = "torch"

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
    ):
        if dtype not in _DTYPES:
            raise ValueError(f"dtype: expected one of {sorted(_DTYPES)}, got {dtype!r}")
        self.dtype = _DTYPES[dtype]
        self.batch_size = int(batch_size)
        self.device = torch.device(device or default_device())
        if compile_kernels is None:
            compile_kernels = os.environ.get("SCS_TORCH_COMPILE", "") == "1"
        if compile_kernels:
            import scs_torch.compiled

            scs_torch.compiled.enable()
        self.memory_format = torch.channels_last if self.device.type == "cpu" else torch.contiguous_format
        torch.manual_seed(seed)
        self.model = build_torch_model(architecture, dtype=self.dtype, device=self.device)
        self.model.to(memory_format=self.memory_format)
        self.optimizer, self.scheduler = make_torch_optimizer(self.model.parameters(), schedule)
        self.images = self._to_device(train_images)
        self.labels = torch.from_numpy(np.asarray(train_labels, np.int64)).to(self.device)
        self._eval_cache: tuple = (None, None)

    def _to_device(self, images: np.ndarray) -> torch.Tensor:
        nchw = np.ascontiguousarray(np.asarray(images).transpose(0, 3, 1, 2))
        return torch.from_numpy(nchw).to(self.device, self.dtype).contiguous(memory_format=self.memory_format)

    def train_step(self, indices: np.ndarray) -> tuple[float, int]:
        """One Adam step on the examples ``indices``; returns (mean loss, correct predictions)."""
        index = torch.from_numpy(np.asarray(indices, np.int64)).to(self.device)
        x, y = self.images[index], self.labels[index]
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.model(x)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return loss.item(), int((logits.argmax(1) == y).sum())

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

    def parameters_numpy(self) -> dict[str, np.ndarray]:
        """Every parameter as numpy, keyed by torch's state-dict names."""
        return {name: p.detach().cpu().numpy().copy() for name, p in self.model.named_parameters()}

"""The trainers, one per framework, each imported only when its framework is asked for.

A trainer is its framework's only adapter: it builds and trains the network,
and it alone knows the framework's command-line flags, its device, the
settings it adds to a run's record and how its state is checkpointed (the
:class:`Trainer` protocol). The runner, the checkpoints and the results name
frameworks only as strings through this registry, so a torch demo never
imports JAX, nor a JAX demo torch.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol

if TYPE_CHECKING:  # pragma: no cover - annotations only
    import numpy as np

    from .architectures import Architecture
    from .augment import AugmentPlan
    from .optim import OneCycle

__all__ = ["TRAINERS", "FRAMEWORKS", "GROUP_TRAINERS", "Trainer", "trainer_class", "group_class",
           "group_canonical"]

#: Each framework's trainer, as ``"module:class"`` (imported on first use).
TRAINERS = {"torch": "demos.train_torch:TorchTrainer", "jax": "demos.train_jax:JaxTrainer"}

#: The frameworks' names, in the order tables and comparisons list them.
FRAMEWORKS: tuple[str, ...] = tuple(TRAINERS)

#: Each framework's trainer of ``K`` runs at once (``--parallel-runs``, :mod:`demos.parallel`).
GROUP_TRAINERS = {"torch": "demos.parallel_torch:TorchRunGroup", "jax": "demos.parallel_jax:JaxRunGroup"}


class Trainer(Protocol):
    """What the runner and the checkpoints use of a trainer (``TorchTrainer``, ``JaxTrainer``)."""

    #: The framework's name, a key of :data:`TRAINERS`.
    framework: ClassVar[str]
    #: The file or folder :meth:`save_state` writes into a checkpoint.
    STATE_NAME: ClassVar[str]
    #: Whether the demos of this framework take ``--device``.
    takes_device: ClassVar[bool]
    #: How many batches the runner hands :meth:`train_steps` at once (``None``: a whole epoch).
    steps_per_call: int | None

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Add the framework's own command-line flags to the demo's parser."""

    @classmethod
    def from_args(cls, args: argparse.Namespace, architecture: Architecture, schedule: OneCycle,
                  train_images: np.ndarray, train_labels: np.ndarray, *, seed: int,
                  augment: AugmentPlan) -> Trainer:
        """The trainer a demo's command line asks for (``train_images``: ``(N, H, W, C)``)."""

    @property
    def device_name(self) -> str:
        """The device it computes on, as recorded in a run's ``host``, e.g. ``"cpu"``."""

    def framework_settings(self) -> dict:
        """Settings of its own recorded with a run and each resume (never compared)."""

    def set_epoch(self, epoch: int) -> None:
        """The 0-based epoch the next training steps belong to."""

    def train_step(self, indices: np.ndarray) -> tuple[float, int]:
        """One optimizer step on the examples ``indices``: (mean loss, correct predictions)."""

    def train_steps(self, batches: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Consecutive steps on ``batches``: per-step mean losses ``(S,)`` and correct predictions ``(S,)``."""

    def evaluate(self, images: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
        """Mean cross-entropy and accuracy over a whole set."""

    @classmethod
    def initial_parameters(cls, architecture: Architecture, seed: int) -> dict[str, np.ndarray]:
        """The parameters a run with ``seed`` starts from: ``{"<i>.<name>": canonical array}``."""

    def load_parameters(self, parameters: dict[str, np.ndarray]) -> None:
        """Start training from ``parameters`` (another trainer's :meth:`initial_parameters`)."""

    def save_state(self, folder: Path) -> None:
        """Write the model, optimizer, schedule and RNG state as ``folder / STATE_NAME``."""

    def load_state(self, folder: Path) -> None:
        """Put the state :meth:`save_state` wrote in ``folder`` into this freshly built trainer."""


def group_canonical(parameters: dict, layers: int) -> list[dict]:
    """``{"<i>.<name>": array}`` as one ``{name: array}`` per parameterised layer ``0 .. layers - 1``.

    Raises:
        ValueError: a key that is not ``"<i>.<name>"``, or layers other than ``0 .. layers - 1``.
    """
    grouped: list[dict] = [{} for _ in range(layers)]
    for key, value in parameters.items():
        index, _, name = str(key).partition(".")
        if not (index.isdigit() and name and int(index) < layers):
            raise ValueError(f"parameters: expected keys '<layer 0..{layers - 1}>.<name>', got {key!r}")
        grouped[int(index)][name] = value
    if not all(grouped):
        missing = [i for i, g in enumerate(grouped) if not g]
        raise ValueError(f"parameters: no parameters for layer(s) {missing} of {layers}")
    return grouped


def trainer_class(framework: str) -> type[Trainer]:
    """The trainer of ``framework``, its module imported now if it was not yet.

    Raises:
        ValueError: unknown ``framework`` (the message lists the choices).
    """
    return _load(TRAINERS, framework)


def group_class(framework: str) -> type:
    """The trainer of ``K`` parallel runs of ``framework`` (:data:`GROUP_TRAINERS`), imported now.

    It has the :class:`Trainer` methods for ``K`` runs (``train_steps`` takes and returns
    one row per run, ``evaluate`` returns ``K`` pairs), ``from_args(..., seeds=, augments=,
    steps_per_epoch=, check_runs=)``, ``group_settings()``, ``memory`` (:mod:`demos.run_memory`),
    ``run_state(k)`` / ``load_run_states(states)`` (each run's checkpoint, in the sequential
    trainer's format), ``load_parameters``, ``run_parameters`` and ``advice()``.

    Raises:
        ValueError: unknown ``framework`` (the message lists the choices).
    """
    return _load(GROUP_TRAINERS, framework)


def _load(table: dict, framework: str):
    try:
        module, name = table[framework].split(":")
    except (KeyError, TypeError):
        raise ValueError(f"framework: expected one of {', '.join(FRAMEWORKS)}, got {framework!r}") from None
    return getattr(importlib.import_module(module), name)

"""``K`` PyTorch runs trained at once with ``torch.func``: parameters stacked on a run axis.

The group twin of :class:`demos.train_torch.TorchTrainer` (its methods, for
``K`` runs), used by :mod:`demos.parallel` for ``--parallel-runs K``. Run
``k`` starts from the network ``TorchTrainer`` builds for its seed
(``torch.func.stack_module_state`` stacks them) and trains on its own batch
plan (and augmentation). A step computes every run's gradients with
``torch.func.grad`` of a ``functional_call`` on a parameter-less copy of the
network, mapped over the runs (``torch.func.vmap``, whose batched
convolutions are grouped convolutions, or a loop, see :data:`MODES`); the
hand-written autograd Functions of :mod:`scs_torch` support both. One Adam
and one one-cycle scheduler step the stacked tensors: Adam is elementwise, so
each run's slice is updated exactly as its own optimizer would update it.
Each run is checkpointed on its own, as a sequential run
(:meth:`TorchRunGroup.run_state`).
"""

from __future__ import annotations

import copy
import json
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, stack_module_state, vmap

from .allocator import keep_freed_memory
from .architectures import Architecture
from .augment import AugmentPlan, active_plan, check_epoch
from .build_torch import build_torch_model, layer_from_numpy, parameter_layers
from .losses import check_label_smoothing
from .optim import OneCycle, make_torch_optimizer
from .run_memory import check_fits, host_available_bytes
from .train_torch import DTYPES, TorchTrainer, default_device, gather_batch
from .trainers import group_canonical

__all__ = ["MODES", "TorchRunGroup"]

#: How a step maps over the runs: ``"vmap"`` (``torch.func.vmap``) or ``"map"`` (a loop).
MODES = ("vmap", "map")


def _stacked_module(models: list[torch.nn.Module]) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(the first network's module tree holding every parameter stacked over ``models``,
    a parameter-less ``meta`` copy for ``functional_call``)."""
    params, _ = stack_module_state(models)
    container = copy.deepcopy(models[0])
    for name, stacked in params.items():
        owner, _, leaf = name.rpartition(".")
        container.get_submodule(owner)._parameters[leaf] = torch.nn.Parameter(stacked.detach())
    return container, copy.deepcopy(models[0]).to("meta")


class TorchRunGroup:
    """Trains ``len(seeds)`` networks together, each as a :class:`TorchTrainer` with its seed.

    Args:
        architecture, schedule, train_images, train_labels, dtype, batch_size, device,
            label_smoothing: as :class:`~demos.train_torch.TorchTrainer` (shared by every run).
        seeds: the runs' seeds, one per run (``K >= 1``).
        augments: one augmentation plan per run (or ``None``: none).
        mode: ``"vmap"`` or ``"map"`` (:data:`MODES`).
        check_runs: only check that this many runs fit (:func:`demos.parallel.check_group_fits`,
            before any run is claimed), with one seed; the object is not usable.

    Raises:
        TooManyRunsError: the runs would not fit in the device's memory (checked
            after building the first run's network, before the others).
        ValueError: no seeds, a bad ``dtype`` or ``mode``, augmentation of only some runs.
    """

    framework = "torch"
    #: One host synchronisation per chunk: the runner hands over a whole epoch.
    steps_per_call = None

    def __init__(self, architecture: Architecture, schedule: OneCycle, train_images: np.ndarray,
                 train_labels: np.ndarray, *, seeds: list[int], dtype: str = "float32", batch_size: int,
                 device: str | None = None, augments: list[AugmentPlan | None] | None = None,
                 mode: str = "vmap", check_runs: int | None = None, label_smoothing: float = 0.0):
        if not seeds:
            raise ValueError("seeds: expected at least one seed, got none")
        if dtype not in DTYPES:
            raise ValueError(f"dtype: expected one of {sorted(DTYPES)}, got {dtype!r}")
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {list(MODES)}, got {mode!r}")
        self.runs, self.mode, self.dtype = len(seeds), mode, DTYPES[dtype]
        self.batch_size = int(batch_size)
        self.label_smoothing = check_label_smoothing(label_smoothing)
        self.augments = [active_plan(plan, train_images) for plan in (augments or [None] * self.runs)]
        if len({plan is None for plan in self.augments}) > 1:
            raise ValueError("augments: expected every run augmented or none, got a mix")
        self.epoch: int | None = None
        self.device = torch.device(device or default_device())
        if self.device.type == "cpu":
            keep_freed_memory()
        nchw = np.ascontiguousarray(np.asarray(train_images).transpose(0, 3, 1, 2))
        self.images = torch.from_numpy(nchw).to(self.device, self.dtype)
        self.labels = torch.from_numpy(np.asarray(train_labels, np.int64)).to(self.device)
        models = []
        for seed in seeds:  # drawn on the CPU, as TorchTrainer draws them
            torch.manual_seed(seed)
            models.append(build_torch_model(architecture, dtype=self.dtype).to(self.device))
            if len(models) == 1:
                self.memory = self._check_memory(models[0], check_runs or self.runs)
                if check_runs is not None:  # only the check
                    return
        self.model, self._base = _stacked_module(models)
        del models
        self.optimizer, self.scheduler = make_torch_optimizer(self.model.parameters(), schedule)
        self._eval_cache: tuple = (None, None)
        self._gradients = vmap(grad(self._loss, has_aux=True)) if mode == "vmap" else grad(self._loss, has_aux=True)

    @classmethod
    def from_args(cls, args, architecture: Architecture, schedule: OneCycle, train_images: np.ndarray,
                  train_labels: np.ndarray, *, seeds: list[int], augments: list, steps_per_epoch: int,
                  check_runs: int | None = None) -> TorchRunGroup:
        """The group of a demo's command line (``--device``, ``--parallel-mode``).

        ``auto`` is ``map`` on a CPU (vmapped steps measured slower than sequential
        ones there, README "Parallel runs"), ``vmap`` elsewhere.

        Raises:
            ValueError: ``--compile`` (the fused kernels do not run under ``torch.func``), or
                the constructor's errors.
        """
        if getattr(args, "compile", False):
            raise ValueError("--compile: parallel runs train without the fused kernels (torch.func); "
                             "leave --compile out, or use --parallel-runs 1")
        if getattr(args, "compile_step", False):
            raise ValueError("--compile-step: parallel runs train with torch.func, not the compiled "
                             "step; leave --compile-step out, or use --parallel-runs 1")
        device = args.device or default_device()
        mode = args.parallel_mode
        if mode == "auto":
            mode = "map" if torch.device(device).type == "cpu" else "vmap"
        return cls(architecture, schedule, train_images, train_labels, seeds=seeds, batch_size=args.batch_size,
                   device=device, augments=augments, mode=mode, check_runs=check_runs,
                   label_smoothing=args.label_smoothing)

    def advice(self) -> str | None:
        """A note for the user when ``K`` runs at once are measured slower here than one at a time."""
        if self.device.type != "cpu":
            return None
        return ("on a CPU, K torch runs at once measured ~2x fewer runs per hour than one at a time "
                "(benchmarks/runs_per_hour.py); --workers N uses more cores instead")

    def _check_memory(self, model: torch.nn.Module, runs: int) -> dict:
        """One run's memory, measured on ``model`` before the group is allocated: the tensors a
        training step's forward saves for the backward (counted by ``saved_tensors_hooks``), its
        batch, and the parameters with their gradients and Adam's two moments; times 1.5 for the
        backward's own buffers (:func:`demos.run_memory.check_fits`).

        Raises:
            TooManyRunsError: the group does not fit.
        """
        saved: dict[int, int] = {}

        def pack(tensor):
            storage = tensor.untyped_storage()
            saved[storage.data_ptr()] = storage.nbytes()
            return tensor

        x, y = gather_batch(self.images, self.labels, np.arange(min(self.batch_size, len(self.labels))), None, None)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            F.cross_entropy(model(x), y)
        state = 4 * sum(p.numel() * p.element_size() for p in model.parameters())
        per_run = 1.5 * (sum(saved.values()) + x.numel() * x.element_size()) + state
        shared = self.images.numel() * self.images.element_size() + self.labels.numel() * 8
        if self.device.type == "cuda":
            capacity, where = torch.cuda.mem_get_info(self.device)[0] + shared, str(self.device)
        else:
            available = host_available_bytes()
            capacity, where = (None if available is None else available + shared), f"the host ({self.device})"
        return check_fits(runs, per_run, shared, capacity, where)

    def _loss(self, params: dict, x: torch.Tensor, y: torch.Tensor):
        """One run's mean (label-smoothed) cross-entropy on ``(B, C, H, W)`` ``x``, with (loss, correct) as aux."""
        logits = functional_call(self._base, params, (x,))
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        return loss, (loss.detach(), (logits.argmax(1) == y).sum())

    @property
    def device_name(self) -> str:
        """The torch device, e.g. ``"cpu"`` or ``"cuda"``."""
        return str(self.device)

    def framework_settings(self) -> dict:
        """A sequential TorchTrainer's settings (groups use neither the fused kernels nor the compiled step)."""
        return {"torch_compile": False, "torch_compile_step": False}

    def group_settings(self) -> dict:
        """How the runs were stacked: ``{"mode": "vmap" | "map", "devices": 1}``."""
        return {"mode": self.mode, "devices": 1}

    def set_epoch(self, epoch: int) -> None:
        """The 0-based epoch the next training steps belong to (it picks their augmentation)."""
        self.epoch = check_epoch(epoch)

    def _batches(self, indices: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Every run's (augmented) images ``(K, B, C, H, W)`` and labels ``(K, B)`` on the device."""
        pairs = [gather_batch(self.images, self.labels, run_indices, plan, self.epoch)
                 for plan, run_indices in zip(self.augments, indices)]
        return torch.stack([x for x, _ in pairs]), torch.stack([y for _, y in pairs])

    def _step(self, indices: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """One Adam step of every run: the ``(K,)`` losses and correct counts, on the device."""
        x, y = self._batches(indices)
        params = {name: p.detach() for name, p in self.model.named_parameters()}
        if self.mode == "vmap":
            grads, (loss, correct) = self._gradients(params, x, y)
        else:
            results = [self._gradients({n: p[k] for n, p in params.items()}, x[k], y[k])
                       for k in range(self.runs)]
            grads = {n: torch.stack([g[n] for g, _ in results]) for n in params}
            loss = torch.stack([aux[0] for _, aux in results])
            correct = torch.stack([aux[1] for _, aux in results])
        for name, p in self.model.named_parameters():
            p.grad = grads[name]
        self.optimizer.step()
        self.scheduler.step()
        return loss, correct

    def train_steps(self, batches: list[list[np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        """One chunk of steps of every run (``batches[k]``: run ``k``'s batches), synchronised once.

        Returns:
            float64 ``(K, S)`` mean losses and int64 ``(K, S)`` correct predictions.

        Raises:
            ValueError: not one list per run, or runs with other batch sizes.
        """
        if len(batches) != self.runs:
            raise ValueError(f"batches: expected one list of batches per run ({self.runs}), got {len(batches)}")
        if len({tuple(len(b) for b in run) for run in batches}) != 1:
            raise ValueError("batches: expected the same batch sizes in every run (one data set)")
        results = [self._step(list(step)) for step in zip(*batches)]
        losses = torch.stack([loss for loss, _ in results], 1).cpu().numpy().astype(np.float64)
        return losses, torch.stack([c for _, c in results], 1).cpu().numpy().astype(np.int64)

    @torch.no_grad()
    def evaluate(self, images: np.ndarray, labels: np.ndarray) -> list[tuple[float, float]]:
        """Every run's mean cross-entropy and accuracy over a whole set: ``K`` pairs."""
        if self._eval_cache[0] is not images:
            nchw = np.ascontiguousarray(np.asarray(images).transpose(0, 3, 1, 2))
            self._eval_cache = (images, (torch.from_numpy(nchw).to(self.device, self.dtype),
                                         torch.from_numpy(np.asarray(labels, np.int64)).to(self.device)))
        x_all, y_all = self._eval_cache[1]
        params = {name: p.detach() for name, p in self.model.named_parameters()}
        sums, corrects = [], []
        for start in range(0, len(y_all), self.batch_size):
            x, y = x_all[start:start + self.batch_size], y_all[start:start + self.batch_size]
            logits = vmap(lambda p: functional_call(self._base, p, (x,)))(params)
            sums.append(vmap(lambda lg: F.cross_entropy(lg, y, reduction="sum"))(logits))
            corrects.append((logits.argmax(2) == y).sum(1))
        sums, corrects = torch.stack(sums, 1).cpu().tolist(), torch.stack(corrects, 1).cpu().tolist()
        n = len(y_all)
        results = []
        for run_sums, run_corrects in zip(sums, corrects):
            loss_sum, correct = 0.0, 0
            for batch_loss, batch_correct in zip(run_sums, run_corrects):
                loss_sum += batch_loss
                correct += int(batch_correct)
            results.append((loss_sum / n, correct / n))
        return results

    def load_parameters(self, parameters: list[dict[str, np.ndarray]]) -> None:
        """Start run ``k`` from ``parameters[k]`` (``TorchTrainer.initial_parameters``' form, any framework's)."""
        if len(parameters) != self.runs:
            raise ValueError(f"parameters: expected one dict per run ({self.runs}), got {len(parameters)}")
        model = copy.deepcopy(self.model)
        for run, arrays in enumerate(parameters):
            for name, p in model.named_parameters():
                p.data = p.data[run].clone()
            layers = parameter_layers(model)
            for layer, grouped in zip(layers, group_canonical(arrays, len(layers))):
                layer_from_numpy(layer, grouped)
            with torch.no_grad():
                for (_, target), (_, source) in zip(self.model.named_parameters(), model.named_parameters()):
                    target[run].copy_(source)
            model = copy.deepcopy(self.model)

    def run_parameters(self, run: int) -> dict[str, np.ndarray]:
        """Run ``run``'s parameters as numpy, keyed by torch's state-dict names (``TorchTrainer``'s keys)."""
        return {name: p.detach()[run].cpu().numpy().copy() for name, p in self.model.named_parameters()}

    def run_state(self, run: int) -> SimpleNamespace:
        """Run ``run``'s state as a sequential trainer holds it (``model``, ``optimizer``,
        ``scheduler``, ``device``), which ``TorchTrainer.save_state`` checkpoints and
        ``TorchTrainer.load_state`` fills: each part a :class:`_StateDict` of that run's slices."""
        optimizer = self.optimizer.state_dict()
        sliced = {i: {key: value[run].clone() if torch.is_tensor(value) and value.dim() else value
                      for key, value in state.items()} for i, state in optimizer["state"].items()}
        return SimpleNamespace(
            model=_StateDict({name: p.detach()[run].clone() for name, p in self.model.named_parameters()}),
            optimizer=_StateDict({**optimizer, "state": sliced}),
            scheduler=_StateDict(self.scheduler.state_dict()), device=self.device)

    def load_run_states(self, states: list[SimpleNamespace]) -> None:
        """Every run's state (:meth:`run_state`'s form, e.g. filled from its checkpoint), stacked.

        Raises:
            ValueError: not one state per run, or runs at different steps of the schedule.
        """
        if len(states) != self.runs:
            raise ValueError(f"states: expected one per run ({self.runs}), got {len(states)}")
        if len({json.dumps(state.scheduler.value, sort_keys=True, default=str) for state in states}) != 1:
            raise ValueError("states: expected every run at the same step of its schedule, got several")
        with torch.no_grad():
            for name, p in self.model.named_parameters():
                p.copy_(torch.stack([state.model.value[name] for state in states]))
        optimizers = [state.optimizer.value for state in states]
        stacked = {i: {key: torch.stack([o["state"][i][key] for o in optimizers]) if torch.is_tensor(value)
                       and value.dim() else value for key, value in state.items()}
                   for i, state in optimizers[0]["state"].items()}
        self.optimizer.load_state_dict({**optimizers[0], "state": stacked})
        self.scheduler.load_state_dict(states[0].scheduler.value)


class _StateDict:
    """A state dict standing in for a module, optimizer or scheduler (``state_dict`` /
    ``load_state_dict``), so that ``TorchTrainer``'s checkpoint code writes and reads one run."""

    def __init__(self, value: dict):
        self.value = value

    def state_dict(self) -> dict:
        return self.value

    def load_state_dict(self, value: dict) -> None:
        self.value = value

"""``K`` JAX runs trained at once: parameters, optimizer states and batch plans stacked on a run axis.

The group twin of :class:`demos.train_jax.JaxTrainer` (its methods, for
``K`` runs), used by :mod:`demos.parallel` for ``--parallel-runs K``. Run
``k`` starts from the parameters ``JaxTrainer`` draws for its seed and is
trained on its own batch plan (and augmentation); the training step of
:mod:`demos.jax_steps` is mapped over the run axis (``jax.vmap``, or
``lax.map`` where that is faster, see :data:`demos.jax_steps.RUN_AXIS_MODES`)
inside the epoch scan, so a whole chunk of steps of all runs is one compiled
call. The run axis is sharded over every local device (a ``Mesh`` over
``jax.devices()``): ``K`` is padded to a multiple of the device count with
copies of the last run, computed and discarded. Each run is checkpointed on
its own, as a sequential run (:meth:`JaxRunGroup.run_state`).
"""

from __future__ import annotations

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from .architectures import Architecture
from .augment import AugmentPlan, active_plan, check_epoch
from .build_jax import build_jax_model, layer_from_numpy, parameter_layers
from .jax_steps import (augment_chunk, batch_ranges, make_eval_step, make_train_step, over_runs,
                        padded_chunks, scan_eval, scan_steps, unrolled_chunks)
from .losses import check_label_smoothing
from .optim import OneCycle, make_optax_optimizer
from .run_memory import check_fits, host_available_bytes
from .train_jax import JaxTrainer, check_dtype, default_device, default_steps_per_call
from .trainers import group_canonical

__all__ = ["JaxRunGroup"]


class JaxRunGroup:
    """Trains ``len(seeds)`` networks together, each exactly as a :class:`JaxTrainer` with its seed.

    Args:
        architecture, schedule, train_images, train_labels, dtype, batch_size,
            label_smoothing: as :class:`~demos.train_jax.JaxTrainer` (shared by every run).
        seeds: the runs' seeds, one per run (``K >= 1``).
        augments: one augmentation plan per run (or ``None``: none).
        mode: ``"vmap"`` or ``"map"`` (:func:`demos.jax_steps.over_runs`).
        steps_per_epoch: the batches of an epoch (the scan's length without ``steps_per_call``).
        steps_per_call: as ``JaxTrainer``'s (``None``: the whole epoch).
        devices: the devices the run axis is sharded over (default ``jax.devices()``).
        check_runs: only check that this many runs fit (:func:`demos.parallel.check_group_fits`,
            before any run is claimed), with one seed; nothing is allocated, the object is not usable.

    Raises:
        TooManyRunsError: the runs' state and the compiled step's buffers would not
            fit in the devices' memory (checked before anything of ``K`` size is allocated).
        ValueError: no seeds, a bad ``mode``, augmentation of only some runs, or
            ``JaxTrainer``'s errors.
    """

    framework = "jax"

    def __init__(self, architecture: Architecture, schedule: OneCycle, train_images: np.ndarray,
                 train_labels: np.ndarray, *, seeds: list[int], dtype: str = "float32", batch_size: int,
                 steps_per_epoch: int, augments: list[AugmentPlan | None] | None = None,
                 mode: str = "vmap", steps_per_call: int | None = None, devices=None,
                 check_runs: int | None = None, label_smoothing: float = 0.0):
        if not seeds:
            raise ValueError("seeds: expected at least one seed, got none")
        self.runs, self.mode = len(seeds), mode
        self.dtype, self.batch_size = check_dtype(dtype), int(batch_size)
        self.label_smoothing = check_label_smoothing(label_smoothing)
        self.augments = [active_plan(plan, train_images) for plan in (augments or [None] * self.runs)]
        if len({plan is None for plan in self.augments}) > 1:
            raise ValueError("augments: expected every run augmented or none, got a mix")
        self.steps_per_call = steps_per_call
        self._scan_length = steps_per_call or steps_per_epoch
        self.epoch: int | None = None
        self.devices = list(devices or jax.devices())
        self.padded_runs = -(-self.runs // len(self.devices)) * len(self.devices)
        mesh = Mesh(np.array(self.devices), ("runs",))
        self._by_run = NamedSharding(mesh, PartitionSpec("runs"))
        self._by_step_and_run = NamedSharding(mesh, PartitionSpec(None, "runs"))
        self._shared = NamedSharding(mesh, PartitionSpec())
        self.tx = make_optax_optimizer(schedule)
        self.graphdef = nnx.split(build_jax_model(architecture, rngs=nnx.Rngs(0), param_dtype=self.dtype))[0]
        self.images = jax.device_put(np.asarray(train_images, self.dtype), self._shared)
        self.labels = jax.device_put(np.asarray(train_labels, np.int32), self._shared)
        self._eval_cache: tuple = (None, None)
        padding = 0 if self.augments[0] is None else self.augments[0].crop_padding
        step = over_runs(make_train_step(self.graphdef, self.tx, padding, self.label_smoothing),
                         (0, 0, None, None, 0, 0, 0, None), mode)
        unrolled = unrolled_chunks() and steps_per_call is not None  # as JaxTrainer
        self._train_scan = jax.jit(scan_steps(step, unrolled=unrolled), donate_argnums=(0, 1))
        self._eval_scan = jax.jit(scan_eval(over_runs(make_eval_step(self.graphdef), (0, None, None, None), mode)))

        def init(key):
            return nnx.split(build_jax_model(architecture, rngs=nnx.Rngs(key), param_dtype=self.dtype))[1]

        if check_runs is not None:  # only the check: one run per device, scaled to check_runs
            self.padded_runs = len(self.devices)
            self.memory = self._check_memory(jax.eval_shape(init, jax.random.key(0)), check_runs)
            return
        self.memory = self._check_memory(jax.eval_shape(init, jax.random.key(0)), self.runs)
        keys = [jax.random.key(seed) for seed in seeds]  # nnx.Rngs(seed) is nnx.Rngs(jax.random.key(seed))
        keys = jnp.stack(keys + [keys[-1]] * (self.padded_runs - self.runs))
        # vmapped builds draw what one build per seed draws (parity_tests/test_init_moments.py)
        self.params = jax.jit(jax.vmap(init), out_shardings=self._by_run)(keys)
        self.opt_state = jax.jit(jax.vmap(self.tx.init), out_shardings=self._by_run)(self.params)

    @classmethod
    def from_args(cls, args, architecture: Architecture, schedule: OneCycle, train_images: np.ndarray,
                  train_labels: np.ndarray, *, seeds: list[int], augments: list, steps_per_epoch: int,
                  check_runs: int | None = None) -> JaxRunGroup:
        """The group of a demo's command line (``--parallel-mode``, ``--steps-per-call``).

        ``auto`` is ``map`` on one CPU device (vmapped steps measured slower than
        sequential ones on XLA:CPU, README "Parallel runs"), ``vmap`` elsewhere.

        Raises:
            ValueError: ``--step-loop`` (groups always scan), or the constructor's errors.
        """
        if getattr(args, "step_loop", False):
            raise ValueError("--step-loop: parallel runs always train with the epoch scan; leave "
                             "--step-loop out, or use --parallel-runs 1")
        mode = args.parallel_mode
        if mode == "auto":
            devices = jax.devices()
            mode = "map" if len(devices) == 1 and devices[0].platform == "cpu" else "vmap"
        return cls(architecture, schedule, train_images, train_labels, seeds=seeds, batch_size=args.batch_size,
                   augments=augments, mode=mode, steps_per_epoch=steps_per_epoch,
                   steps_per_call=getattr(args, "steps_per_call", None) or default_steps_per_call(),
                   check_runs=check_runs, label_smoothing=args.label_smoothing)

    def advice(self) -> str | None:
        """A note for the user when ``K`` runs at once are measured slower here than one at a time."""
        if self.devices[0].platform != "cpu":
            return None
        return ("on a CPU, K JAX runs at once measured ~4x fewer runs per hour than one at a time "
                "(XLA:CPU runs scanned steps and grouped convolutions slowly; "
                "benchmarks/runs_per_hour.py); --workers N uses more cores instead")

    def _stack(self, trees: list):
        """Per-run pytrees stacked on a leading run axis, padded and sharded over the devices."""
        trees = trees + [trees[-1]] * (self.padded_runs - len(trees))
        return jax.device_put(jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees), self._by_run)

    @property
    def device_name(self) -> str:
        """JAX's default device, as a sequential run records it (the device count is in :meth:`group_settings`)."""
        return default_device()

    def framework_settings(self) -> dict:
        """A sequential JaxTrainer's settings with the epoch scan (the runs' numbers are its)."""
        return {"jax_epoch_scan": True, "jax_steps_per_call": self.steps_per_call}

    def group_settings(self) -> dict:
        """How the runs were stacked: ``{"mode": "vmap" | "map", "devices": D}``."""
        return {"mode": self.mode, "devices": len(self.devices)}

    def set_epoch(self, epoch: int) -> None:
        """The 0-based epoch the next training steps belong to (it picks their augmentation)."""
        self.epoch = check_epoch(epoch)

    def _per_step(self, array: np.ndarray, sharding) -> jax.Array:
        """``(S, K, ...)`` per-run arrays padded to the padded run count and sharded by run."""
        pad = [array[:, -1:]] * (self.padded_runs - self.runs)
        return jax.device_put(np.concatenate([array, *pad], axis=1) if pad else array, sharding)

    def train_steps(self, batches: list[list[np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        """One chunk of steps of every run: ``batches[k]`` holds run ``k``'s batches.

        Returns:
            float64 ``(K, S)`` mean losses and int64 ``(K, S)`` correct predictions.

        Raises:
            ValueError: not one list per run, runs with other batch sizes, or bad batches.
        """
        if len(batches) != self.runs:
            raise ValueError(f"batches: expected one list of batches per run ({self.runs}), got {len(batches)}")
        sizes = {tuple(len(b) for b in run) for run in batches}
        if len(sizes) != 1:
            raise ValueError("batches: expected the same batch sizes in every run (one data set), got "
                             f"{sorted(sizes)}")
        count = len(batches[0])
        chunks = [padded_chunks(run, self.batch_size, self._scan_length, self.dtype) for run in batches]
        index = self._per_step(np.stack([c[0] for c in chunks], axis=1), self._by_step_and_run)
        mask, active = (jax.device_put(a, self._shared) for a in chunks[0][1:])
        rows, cols = self._augment_chunk(batches)
        self.params, self.opt_state, losses, corrects = self._train_scan(
            self.params, self.opt_state, self.images, self.labels, index, rows, cols, mask, active)
        return (np.asarray(losses, np.float64)[:count, :self.runs].T,
                np.asarray(corrects, np.int64)[:count, :self.runs].T)

    def _augment_chunk(self, batches: list[list[np.ndarray]]):
        """Every run's gather indices ``(S, K, B, H)``/``(S, K, B, W)``, or ``(None, None)``."""
        if self.augments[0] is None:
            return None, None
        per_run = [augment_chunk(plan, run, self.epoch, self.batch_size, self._scan_length)
                   for plan, run in zip(self.augments, batches)]
        return tuple(self._per_step(np.stack([r[i] for r in per_run], axis=1), self._by_step_and_run)
                     for i in (0, 1))

    def evaluate(self, images: np.ndarray, labels: np.ndarray) -> list[tuple[float, float]]:
        """Every run's mean cross-entropy and accuracy over a whole set: ``K`` pairs."""
        n = len(labels)
        if self._eval_cache[0] is not images:
            self._eval_cache = (images, (jax.device_put(np.asarray(images, self.dtype), self._shared),
                                         jax.device_put(np.asarray(labels, np.int32), self._shared)))
        x_all, y_all = self._eval_cache[1]
        index, mask, _ = padded_chunks(batch_ranges(n, self.batch_size), self.batch_size,
                                       -(-n // self.batch_size), self.dtype)
        sums, corrects = (np.asarray(a)[:, :self.runs] for a in self._eval_scan(self.params, x_all, y_all, index, mask))
        results = []
        for run in range(self.runs):
            loss_sum, correct = 0.0, 0
            for batch_loss, batch_correct in zip(sums[:, run].tolist(), corrects[:, run].tolist()):
                loss_sum += float(batch_loss)
                correct += int(batch_correct)
            results.append((loss_sum / n, correct / n))
        return results

    def load_parameters(self, parameters: list[dict[str, np.ndarray]]) -> None:
        """Start run ``k`` from ``parameters[k]`` (``JaxTrainer.initial_parameters``' form, any framework's).

        The optimizer states are made afresh (Adam's start at zero).
        """
        if len(parameters) != self.runs:
            raise ValueError(f"parameters: expected one dict per run ({self.runs}), got {len(parameters)}")
        states = []
        for run, arrays in enumerate(parameters):
            model = nnx.merge(self.graphdef, jax.tree.map(lambda a: a[run], self.params))
            layers = parameter_layers(model)
            for layer, grouped in zip(layers, group_canonical(arrays, len(layers))):
                layer_from_numpy(layer, grouped)
            states.append(nnx.split(model)[1])
        self.params = self._stack(states)
        self.opt_state = self._stack([self.tx.init(state) for state in states])

    def run_parameters(self, run: int) -> dict[str, np.ndarray]:
        """Run ``run``'s parameters as numpy, keyed by their path in the NNX graph (``JaxTrainer``'s keys)."""
        flat = nnx.to_flat_state(jax.tree.map(lambda a: a[run], self.params))
        return {".".join(map(str, path)): np.asarray(v[...]) for path, v in flat}

    def run_state(self, run: int) -> SimpleNamespace:
        """Run ``run``'s state as a sequential trainer holds it (``params``, ``opt_state``), which
        ``JaxTrainer.save_state`` checkpoints and ``JaxTrainer.load_state`` fills; a copy."""
        return SimpleNamespace(params=jax.tree.map(lambda a: a[run], self.params),
                               opt_state=jax.tree.map(lambda a: a[run], self.opt_state))

    def load_run_states(self, states: list[SimpleNamespace]) -> None:
        """Every run's state (:meth:`run_state`'s form, e.g. filled from its checkpoint), stacked."""
        if len(states) != self.runs:
            raise ValueError(f"states: expected one per run ({self.runs}), got {len(states)}")
        self.params = self._stack([state.params for state in states])
        self.opt_state = self._stack([state.opt_state for state in states])

    def _spec(self, shape, dtype, sharding):
        return jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)

    def _check_memory(self, one_run, runs: int) -> dict:
        """XLA's buffer sizes of the compiled training call (compiled now, from abstract arguments,
        so nothing is allocated; JAX's compilation cache serves the first real call), checked
        against the device's memory (:func:`demos.run_memory.check_fits`).

        Raises:
            TooManyRunsError: the group does not fit.
        """
        stacked = jax.tree.map(
            lambda a: self._spec((self.padded_runs, *a.shape), a.dtype, self._by_run), one_run)
        state = (stacked, jax.eval_shape(jax.vmap(self.tx.init), stacked))
        state = jax.tree.map(lambda a: self._spec(a.shape, a.dtype, self._by_run), state)
        index = self._spec((self._scan_length, self.padded_runs, self.batch_size), jnp.int32, self._by_step_and_run)
        rows = cols = None
        if self.augments[0] is not None:
            plan = self.augments[0]
            rows = self._spec(index.shape + (plan.height,), jnp.int32, self._by_step_and_run)
            cols = self._spec(index.shape + (plan.width,), jnp.int32, self._by_step_and_run)
        compiled = self._train_scan.lower(
            *state, self.images, self.labels, index, rows, cols,
            self._spec((self._scan_length, self.batch_size), self.dtype, self._shared),
            self._spec((self._scan_length,), jnp.bool_, self._shared)).compile()
        stats = compiled.memory_analysis()
        shared = self.images.nbytes + self.labels.nbytes
        if stats is None:  # a backend that reports nothing: no check
            return check_fits(runs, 0, shared, None, "")
        total = (stats.argument_size_in_bytes + stats.output_size_in_bytes - stats.alias_size_in_bytes
                 + stats.temp_size_in_bytes)
        per_device_runs = self.padded_runs // len(self.devices)
        per_run = max(total - shared, 0) / per_device_runs
        device = self.devices[0]
        limits = device.memory_stats() or {}
        if "bytes_limit" in limits:
            capacity, where = limits["bytes_limit"] - limits.get("bytes_in_use", 0) + shared, str(device)
        else:
            available = host_available_bytes()
            capacity, where = (None if available is None else available + shared), f"the host ({device})"
        return check_fits(runs, per_run, shared, capacity, where, len(self.devices))

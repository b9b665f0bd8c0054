"""The order in which training examples are visited: one plan, consumed by both frameworks.

Epoch ``e`` of a run with seed ``s`` visits a permutation of the training set
drawn from ``numpy.random.default_rng((s, e))``, cut into batches of
``batch_size`` with the last, partial batch kept (``DataLoader``'s
``drop_last=False``). Seeding each epoch from ``(seed, epoch)`` makes any
epoch's order reproducible on its own, so a resumed run visits the same
batches as an uninterrupted one.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["BatchPlan"]


class BatchPlan:
    """Shuffled mini-batches of ``num_examples`` indices, the same in torch and JAX.

    Args:
        num_examples: size of the training set, positive.
        batch_size: examples per batch, positive.
        seed: the run's seed (any non-negative int).

    Raises:
        ValueError: naming the argument, the expected and the received value.
    """

    def __init__(self, num_examples: int, batch_size: int, seed: int):
        for name, value in (("num_examples", num_examples), ("batch_size", batch_size)):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed: expected a non-negative int, got {seed!r}")
        self.num_examples = int(num_examples)
        self.batch_size = int(batch_size)
        self.seed = int(seed)

    @property
    def steps_per_epoch(self) -> int:
        """Batches per epoch, the last one partial when ``batch_size`` does not divide the set."""
        return math.ceil(self.num_examples / self.batch_size)

    def permutation(self, epoch: int) -> np.ndarray:
        """The visiting order of epoch ``epoch`` (0-based): int64 ``(num_examples,)``."""
        if not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"epoch: expected a non-negative int, got {epoch!r}")
        return np.random.default_rng((self.seed, int(epoch))).permutation(self.num_examples)

    def batches(self, epoch: int) -> list[np.ndarray]:
        """Epoch ``epoch``'s batches: ``steps_per_epoch`` int64 index arrays."""
        order = self.permutation(epoch)
        return [order[i : i + self.batch_size] for i in range(0, self.num_examples, self.batch_size)]

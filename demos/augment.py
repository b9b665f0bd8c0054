"""Training-set augmentation: random crops and horizontal flips, one plan for both frameworks.

Meant for CIFAR-10 (``--random-crop --hflip`` in the demos), harmless on
Fashion-MNIST. The two operations are those of torchvision's
``RandomCrop(size, padding=4)`` followed by ``RandomHorizontalFlip(0.5)``:

* random crop: the image is padded with ``crop_padding`` zeros on every side
  and an ``H x W`` window is cut out of it at offsets ``(dy, dx)`` drawn
  uniformly from ``[0, 2 * crop_padding]`` (``dy = dx = crop_padding`` is the
  image itself);
* horizontal flip: with probability 0.5 the (cropped) image is mirrored left
  to right.

Both are drawn here, in NumPy, per epoch and per *example* (not per position
in the batch), so that a torch run and a JAX run with the same seed train on
bit-identical batches whatever their batch size:

* the crop offsets of epoch ``e`` of a run with seed ``s`` come from
  ``numpy.random.default_rng((s, e, 1))``: ``integers(0, 2 * crop_padding + 1,
  size=(N, 2))``, column 0 the row offset ``dy``, column 1 the column offset ``dx``;
* the flip flags from ``numpy.random.default_rng((s, e, 2))``:
  ``random(N) < 0.5``.

The batch plan (:class:`demos.batch_plan.BatchPlan`) draws the visiting order
from ``default_rng((s, e))``; NumPy's ``SeedSequence`` treats ``(s, e)`` and
``(s, e, 0)`` as the same seed, hence the tags 1 and 2. Separate streams mean
that switching augmentation on changes neither the visiting order nor, for
one operation, the draws of the other.

A crop followed by a flip is one gather of the zero-padded image: output row
``i`` is padded row ``dy + i`` and output column ``j`` is padded column
``dx + j``, or ``dx + W - 1 - j`` when flipped (:func:`gather_indices`). The
trainers apply that gather on their device; it moves values without any
arithmetic, so the augmented batches are exactly equal in both frameworks.
The evaluation (test) pass is never augmented.
"""

from __future__ import annotations

import numpy as np

__all__ = ["CIFAR_CROP_PADDING", "AugmentPlan", "active_plan", "check_epoch", "gather_indices"]

#: The zero padding of the demos' ``--random-crop`` (CIFAR-10's usual 4 pixels).
CIFAR_CROP_PADDING = 4

#: Tags appended to ``(seed, epoch)`` to seed the crop and the flip streams.
CROP_STREAM, FLIP_STREAM = 1, 2


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_epoch(epoch) -> int:
    """``epoch`` as an int, when it is a 0-based epoch number.

    Raises:
        ValueError: ``epoch`` is not a non-negative int (``None`` included: a
            trainer that augments must be told the epoch with ``set_epoch``).
    """
    if not _is_int(epoch) or epoch < 0:
        raise ValueError(f"epoch: expected a non-negative int (the 0-based epoch, which the "
                         f"augmentation depends on; trainers take it from set_epoch), got {epoch!r}")
    return int(epoch)


def gather_indices(offsets: np.ndarray, flips: np.ndarray, height: int, width: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices into the padded images that crop (and flip) them.

    Args:
        offsets: ``(B, 2)`` non-negative integers, ``(dy, dx)`` per image: the
            top-left corner of the ``height x width`` window in the padded image.
        flips: ``(B,)`` bool, ``True`` where the window is mirrored left to right.
        height, width: the output (unpadded) image size, positive ints.

    Returns:
        ``(rows, cols)``: int64 ``(B, height)`` and ``(B, width)``. Output pixel
        ``(b, i, j)`` is padded pixel ``(b, rows[b, i], cols[b, j])``; with NumPy,
        ``padded[np.arange(B)[:, None, None], rows[:, :, None], cols[:, None, :]]``
        for NHWC ``padded``.

    Raises:
        ValueError: naming the argument, the expected and the received value.
    """
    for name, value in (("height", height), ("width", width)):
        if not _is_int(value) or value < 1:
            raise ValueError(f"{name}: expected a positive int, got {value!r}")
    offsets, flips = np.asarray(offsets), np.asarray(flips)
    if offsets.ndim != 2 or offsets.shape[1] != 2 or not np.issubdtype(offsets.dtype, np.integer):
        raise ValueError(f"offsets: expected a (B, 2) integer array, got {offsets.dtype} "
                         f"{offsets.shape}")
    if offsets.size and offsets.min() < 0:
        raise ValueError(f"offsets: expected non-negative offsets, got minimum {offsets.min()}")
    if flips.shape != offsets.shape[:1] or flips.dtype != np.bool_:
        raise ValueError(f"flips: expected a ({len(offsets)},) bool array (one per offset pair), "
                         f"got {flips.dtype} {flips.shape}")
    offsets = offsets.astype(np.int64)
    rows = offsets[:, :1] + np.arange(height, dtype=np.int64)
    columns = np.where(flips[:, None], np.arange(width - 1, -1, -1, dtype=np.int64),
                       np.arange(width, dtype=np.int64))
    return rows, offsets[:, 1:] + columns


class AugmentPlan:
    """Per-epoch, per-example crop offsets and flip flags of one run, the same in torch and JAX.

    Args:
        num_examples: size of the training set, positive.
        image_size: ``(height, width)`` of the training images, positive ints.
        seed: the run's seed (the :class:`~demos.batch_plan.BatchPlan` one), non-negative.
        crop_padding: zero padding of the random crop in pixels; 0: no crop.
        hflip: mirror each image left to right with probability 0.5.

    A plan with ``crop_padding=0`` and ``hflip=False`` is valid and does
    nothing (:attr:`enabled` is ``False``; the trainers then skip the gather).

    Raises:
        ValueError: naming the argument, the expected and the received value.
    """

    def __init__(self, num_examples: int, image_size: tuple[int, int], seed: int, *,
                 crop_padding: int = 0, hflip: bool = False):
        if not _is_int(num_examples) or num_examples < 1:
            raise ValueError(f"num_examples: expected a positive int, got {num_examples!r}")
        size = tuple(image_size) if isinstance(image_size, (tuple, list)) else image_size
        if not (isinstance(size, tuple) and len(size) == 2 and all(_is_int(v) and v >= 1 for v in size)):
            raise ValueError(f"image_size: expected (height, width), two positive ints, "
                             f"got {image_size!r}")
        if not _is_int(seed) or seed < 0:
            raise ValueError(f"seed: expected a non-negative int, got {seed!r}")
        if not _is_int(crop_padding) or crop_padding < 0:
            raise ValueError(f"crop_padding: expected a non-negative int, got {crop_padding!r}")
        if not isinstance(hflip, (bool, np.bool_)):
            raise ValueError(f"hflip: expected a bool, got {hflip!r}")
        self.num_examples = int(num_examples)
        self.height, self.width = int(size[0]), int(size[1])
        self.seed = int(seed)
        self.crop_padding = int(crop_padding)
        self.hflip = bool(hflip)
        self._cache: tuple = (None, None)

    @property
    def enabled(self) -> bool:
        """Whether the plan changes any image (a crop, a flip or both)."""
        return self.crop_padding > 0 or self.hflip

    def settings(self) -> dict:
        """The run-record settings of this plan: ``{"random_crop_padding": int, "hflip": bool}``."""
        return {"random_crop_padding": self.crop_padding, "hflip": self.hflip}

    def draw(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """Epoch ``epoch``'s augmentation of every training example.

        Returns:
            ``(offsets, flips)``: int64 ``(num_examples, 2)`` crop offsets
            ``(dy, dx)`` in ``[0, 2 * crop_padding]`` (all zero without crop)
            and bool ``(num_examples,)`` flip flags (all ``False`` without flip),
            indexed by example. Read-only arrays, cached for the last epoch asked.

        Raises:
            ValueError: ``epoch`` is not a non-negative int.
        """
        epoch = check_epoch(epoch)
        if self._cache[0] != epoch:
            n = self.num_examples
            offsets = np.zeros((n, 2), np.int64)
            flips = np.zeros(n, np.bool_)
            if self.crop_padding:
                rng = np.random.default_rng((self.seed, epoch, CROP_STREAM))
                offsets = rng.integers(0, 2 * self.crop_padding + 1, size=(n, 2), dtype=np.int64)
            if self.hflip:
                flips = np.random.default_rng((self.seed, epoch, FLIP_STREAM)).random(n) < 0.5
            offsets.flags.writeable = flips.flags.writeable = False
            self._cache = (epoch, (offsets, flips))
        return self._cache[1]

    def batch_indices(self, indices: np.ndarray, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """The gather indices of the examples ``indices`` in epoch ``epoch``.

        Args:
            indices: ``(B,)`` integer example indices in ``[0, num_examples)``.
            epoch: the 0-based epoch.

        Returns:
            ``(rows, cols)``: int64 ``(B, height)`` and ``(B, width)`` indices into
            the images zero-padded by ``crop_padding`` (see :func:`gather_indices`).

        Raises:
            ValueError: bad ``indices`` or ``epoch``, naming it, the expected and the received value.
        """
        indices = np.asarray(indices)
        if indices.ndim != 1 or not np.issubdtype(indices.dtype, np.integer):
            raise ValueError(f"indices: expected a (B,) integer array, got {indices.dtype} "
                             f"{indices.shape}")
        if indices.size and (indices.min() < 0 or indices.max() >= self.num_examples):
            raise ValueError(f"indices: expected example indices in [0, {self.num_examples}), got "
                             f"[{indices.min()}, {indices.max()}]")
        offsets, flips = self.draw(epoch)
        return gather_indices(offsets[indices], flips[indices], self.height, self.width)


def active_plan(augment: AugmentPlan | None, train_images) -> AugmentPlan | None:
    """What a trainer applies: ``augment`` when it is enabled, ``None`` when it does nothing.

    Args:
        augment: the run's plan, or ``None``.
        train_images: the trainer's ``(N, H, W, C)`` training images (NHWC).

    Raises:
        ValueError: an enabled plan made for another number or size of images.
    """
    if augment is None or not augment.enabled:
        return None
    n, height, width = np.shape(train_images)[:3]
    if (augment.num_examples, augment.height, augment.width) != (n, height, width):
        raise ValueError(
            f"augment: expected a plan for {n} images of {height}x{width}, got one for "
            f"{augment.num_examples} images of {augment.height}x{augment.width}")
    return augment

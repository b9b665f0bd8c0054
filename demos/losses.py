"""The training loss: cross-entropy with optional label smoothing, the same in both frameworks.

With smoothing ``ε`` the target of an example of class ``y`` among ``K`` classes is
``(1 - ε) one_hot(y) + ε / K`` (Szegedy et al., "Rethinking the Inception
Architecture", 2016, section 7). torch computes it as
``F.cross_entropy(logits, y, label_smoothing=ε)`` (:mod:`demos.train_torch`), JAX
as ``optax.softmax_cross_entropy(logits, optax.smooth_labels(one_hot(y), ε))``
(:func:`smoothed_cross_entropy`); the parity tests hold the two to the layer
tolerances, losses and gradients. ``ε = 0`` is plain cross-entropy (in JAX
``softmax_cross_entropy_with_integer_labels``, as before smoothing existed).

Importing it is cheap (standard library only): a torch demo imports it and
never JAX; :func:`smoothed_cross_entropy` imports JAX when called.
"""

from __future__ import annotations

import math

__all__ = ["check_label_smoothing", "smoothed_cross_entropy"]


def check_label_smoothing(value) -> float:
    """``value`` as a float, when it is a label smoothing ε in [0, 1).

    Raises:
        ValueError: naming ``label_smoothing``, the expected range and the value.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0.0 <= value < 1.0:
        raise ValueError(f"label_smoothing: expected a number in [0, 1), got {value!r}")
    return float(value)


def smoothed_cross_entropy(logits, labels, label_smoothing: float):
    """Per-example cross-entropy against label-smoothed targets (JAX).

    Args:
        logits: ``(N, K)`` float array.
        labels: ``(N,)`` integer class labels in ``[0, K)``.
        label_smoothing: ε in [0, 1), a Python number (it decides the traced
            computation: 0 is ``softmax_cross_entropy_with_integer_labels``).

    Returns:
        ``(N,)`` losses in the dtype of ``logits``.

    Raises:
        ValueError: ``label_smoothing`` outside [0, 1).
    """
    import jax
    import optax

    label_smoothing = check_label_smoothing(label_smoothing)
    if label_smoothing == 0.0:
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype),
                                  label_smoothing)
    return optax.softmax_cross_entropy(logits, targets)

"""Sharpened Cosine Similarity and MaxAbsPool for PyTorch (NCHW).

The twin of ``scs_jax`` (Flax NNX, NHWC): the same maths, parameters and
initial distributions, proven identical by the project's parity tests.
"""

from . import convert, functional, shapes
from .functional import max_abs_pool, sharpened_cosine_similarity, sharpened_cosine_similarity_max_abs_pool
from .layers import MaxAbsPool2d, SharpenedCosineSimilarity2d

__all__ = [
    "SharpenedCosineSimilarity2d",
    "MaxAbsPool2d",
    "sharpened_cosine_similarity",
    "max_abs_pool",
    "sharpened_cosine_similarity_max_abs_pool",
    "functional",
    "convert",
    "shapes",
]

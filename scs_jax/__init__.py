"""Sharpened Cosine Similarity and MaxAbsPool for JAX / Flax NNX (NHWC).

The twin of ``scs_torch`` (PyTorch, NCHW): the same maths, parameters and
initial distributions, proven identical by the project's parity tests.
"""

from . import convert, functional, shapes
from .functional import max_abs_pool, sharpened_cosine_similarity, sharpened_cosine_similarity_max_abs_pool
from .layers import MaxAbsPool, SharpenedCosineSimilarity

__all__ = [
    "SharpenedCosineSimilarity",
    "MaxAbsPool",
    "sharpened_cosine_similarity",
    "max_abs_pool",
    "sharpened_cosine_similarity_max_abs_pool",
    "functional",
    "convert",
    "shapes",
]

"""Train the reference SCS network on Fashion-MNIST with JAX/Flax, run after run.

Usage: ``python demos/fashion_mnist_jax.py [VERSION] [--epochs N] [--runs N] ...``
(``--help`` lists every flag). Each completed run is appended to
``results/fashion_mnist/VERSION/jax/``; ``python demos/show_results.py VERSION`` summarises.
The twin demo is ``demos/fashion_mnist_torch.py``.
"""

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from demos.runner import main

if __name__ == "__main__":
    # The file's name, <dataset>_<framework>.py, names the demo (demos.registry, demos.trainers).
    sys.exit(main(*Path(__file__).stem.rsplit("_", 1)))

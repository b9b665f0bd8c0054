"""Train the reference SCS network on CIFAR-10 with PyTorch, run after run.

Usage: ``python demos/cifar10_torch.py [VERSION] [--epochs N] [--runs N] ...``
(``--help`` lists every flag). Each completed run is appended to
``results/cifar10/VERSION/torch/``; ``python demos/show_results.py VERSION`` summarises.
The twin demo is ``demos/cifar10_jax.py``.
"""

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from demos.runner import main

if __name__ == "__main__":
    # The file's name, <dataset>_<framework>.py, names the demo (demos.registry, demos.trainers).
    sys.exit(main(*Path(__file__).stem.rsplit("_", 1)))

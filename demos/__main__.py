"""Any registered demo: ``python -m demos DATASET FRAMEWORK [VERSION] [flags]``.

``python -m demos fashion_mnist jax v1`` runs what ``python demos/fashion_mnist_jax.py v1``
runs; the datasets are those of :mod:`demos.registry`, the frameworks those of
:mod:`demos.trainers`, and ``python -m demos DATASET FRAMEWORK --help`` lists the demo's flags.
"""

from __future__ import annotations

import argparse
import sys

from demos import registry, runner, trainers


def main(argv: list[str] | None = None) -> int:
    """Run the demo named by the first two arguments with the rest; returns its exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m demos",
        description="Train the reference SCS network on a dataset with a framework, run after "
                    "run (the demos/<dataset>_<framework>.py scripts, for every registered demo).")
    parser.add_argument("dataset", choices=registry.names())
    parser.add_argument("framework", choices=trainers.FRAMEWORKS)
    parser.add_argument("arguments", nargs=argparse.REMAINDER,
                        help="the demo's own: VERSION and flags (add --help to list them)")
    args = parser.parse_args(argv)
    return runner.main(args.dataset, args.framework, args.arguments,
                       prog=f"python -m demos {args.dataset} {args.framework}")


if __name__ == "__main__":
    sys.exit(main())

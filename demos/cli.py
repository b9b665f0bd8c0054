"""The demos' command line: one parser for every dataset and framework.

The defaults are the recipe of the network ``--arch`` selects (the demo's
entries in :mod:`demos.registry`, :mod:`demos.gallery`, :mod:`demos.recipe`;
``reference`` by default); the framework's trainer adds its own flags (torch's
``--device`` and ``--compile``). The argument types check every value before
anything is loaded; ``compare_frameworks.py`` uses them too.
"""

from __future__ import annotations

import argparse
import math

from . import registry, trainers
from .claims import DEFAULT_LEASE_SECONDS
from .recipe import Recipe
from .records import validate_version

__all__ = ["MAX_SEED", "MAX_LEARNING_RATE", "positive_int", "non_negative_int", "seed",
           "positive_float", "learning_rate", "label_smoothing", "lease_seconds", "version",
           "parse_args"]

#: Seeds stay below 2**62 so that seed + run index fits every RNG's seed type
#: (torch.manual_seed and JAX's keys take 64-bit integers).
MAX_SEED = 2**62

#: Largest accepted --max-lr: above about 1e37, torch's Adam step itself overflows float32.
MAX_LEARNING_RATE = 1e30


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def seed(text: str) -> int:
    value = non_negative_int(text)
    if value >= MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected a seed below 2**62, got {text!r}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def learning_rate(text: str) -> float:
    value = positive_float(text)
    if value > MAX_LEARNING_RATE:
        raise argparse.ArgumentTypeError(
            f"expected at most {MAX_LEARNING_RATE:g} (larger learning rates overflow float32 "
            f"inside Adam's update), got {text!r}")
    return value


def label_smoothing(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


def lease_seconds(text: str) -> float:
    value = positive_float(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1 second, got {text!r}")
    return value


def version(text: str) -> str:
    try:
        return validate_version(text)
    except (TypeError, ValueError) as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parse_args(dataset: str, framework: str, argv=None, *, prog: str | None = None) -> argparse.Namespace:
    """The demo's command line (``--help`` explains every flag).

    Besides the flags, ``args.parameters`` is the parameter count of the
    network ``--arch`` selects (recorded with each run).

    Args:
        dataset: a dataset of :mod:`demos.registry`; the recipe of its entry that
            ``--arch`` names gives the defaults.
        framework: a framework of :mod:`demos.trainers` (its trainer is imported
            to add its flags).
        argv: the arguments; ``None``: ``sys.argv[1:]``.
        prog: the program's name in messages (default ``demos/<dataset>_<framework>.py``).

    Raises:
        SystemExit: bad arguments (status 2, with argparse's message) or ``--help``.
    """
    demo = registry.get(dataset)
    entries = demo.entries()
    # --arch first: the network it names gives every other flag its default.
    prog = prog or f"demos/{dataset}_{framework}.py"
    arch_parser = argparse.ArgumentParser(prog=prog, add_help=False)
    _add_arch_argument(arch_parser, entries)
    entry = entries[arch_parser.parse_known_args(argv)[0].arch]
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            f"Train an SCS network on {dataset} with {framework} (the reference network, or "
            f"the one --arch names), run after run, and append each completed run to "
            f"results/{dataset}/VERSION/{framework}/. Stop it any time with Ctrl-C; completed "
            "runs are kept and a restart appends. The defaults shown are those of --arch "
            f"{entry.name}; each network has its own recipe."
        ),
    )
    _add_arch_argument(parser, entries)
    _add_run_arguments(parser, entry.recipe)
    _add_input_output_arguments(parser)
    _add_augmentation_arguments(parser, entry.recipe)
    _add_worker_arguments(parser)
    parser.add_argument("--init-from", choices=trainers.FRAMEWORKS, default=framework,
                        help="draw each run's initial parameters as this framework's demo does for "
                             "the same seed and start from them (another framework: a paired "
                             "comparison, compare_frameworks.py --paired; default: %(default)s)")
    trainers.trainer_class(framework).add_arguments(parser)
    args = parser.parse_args(argv)
    if args.no_checksum and args.data_dir is None:
        parser.error("--no-checksum needs --data-dir (it only applies to local files)")
    args.parameters = entry.architecture.parameter_count()
    return args


def _add_arch_argument(parser: argparse.ArgumentParser, entries: dict) -> None:
    listing = "; ".join(f"{name}: {entry.architecture.parameter_count():,} parameters"
                        for name, entry in entries.items())
    parser.add_argument("--arch", choices=tuple(entries), default=next(iter(entries)),
                        help=f"the network to train, with its own recipe as the defaults of the "
                             f"other flags ({listing}; default: %(default)s)")


def _add_run_arguments(parser: argparse.ArgumentParser, recipe: Recipe) -> None:
    parser.add_argument(
        "version", nargs="?", default="test", type=version,
        help="results version: letters, digits and underscores (default: %(default)s)",
    )
    parser.add_argument("--epochs", type=positive_int, default=recipe.epochs,
                        help="epochs per run (default: %(default)s)")
    parser.add_argument("--runs", type=positive_int, default=None,
                        help="number of runs to add, then stop (default: until stopped)")
    parser.add_argument("--batch-size", type=positive_int, default=recipe.batch_size,
                        help="examples per batch (default: %(default)s)")
    parser.add_argument("--max-lr", type=learning_rate, default=recipe.max_lr,
                        help="peak learning rate of the one-cycle schedule (default: %(default)s)")
    parser.add_argument("--seed", type=seed, default=recipe.seed,
                        help="base seed; run N uses seed + N (default: %(default)s)")
    parser.add_argument("--label-smoothing", type=label_smoothing, default=recipe.label_smoothing,
                        help="label smoothing eps of the training loss, in [0, 1): cross-entropy "
                             "against (1 - eps) one-hot + eps / classes; the test loss is plain "
                             "cross-entropy (default: %(default)s)")
    parser.add_argument("--parallel-runs", type=positive_int, default=1, metavar="K",
                        help="train K runs with consecutive seeds at once, each saved as its own "
                             "record (the same numbers as one at a time); refused, naming the "
                             "largest K that fits, when K runs would not fit in memory "
                             "(default: %(default)s)")
    parser.add_argument("--parallel-mode", choices=("auto", "vmap", "map"), default="auto",
                        help="how parallel runs share a step: vmap (batched operations, fast on "
                             "GPUs) or map (one run after another inside each step); auto: map on "
                             "a CPU, where vmapped runs measured slower than sequential ones, "
                             "vmap elsewhere (default: %(default)s)")


def _add_input_output_arguments(parser: argparse.ArgumentParser) -> None:
    local_files = "; ".join(f"{demo.title}: {demo.loader_module().LOCAL_FILES}"
                            for demo in registry.DEMOS.values())
    parser.add_argument("--data-dir", default=None,
                        help=f"folder with local dataset files ({local_files})")
    parser.add_argument("--no-checksum", action="store_true",
                        help="with --data-dir: accept files that are not the official dataset "
                             "(e.g. small generated files for tests); they are only checked for "
                             "a valid format, parsed with NumPy, and each run's settings say so")
    parser.add_argument("--results-dir", default=None,
                        help="where results are stored (default: the repository's results/)")
    parser.add_argument("--limit-train", type=positive_int, default=None,
                        help="train on the first N training examples only (for smoke tests)")
    parser.add_argument("--limit-test", type=positive_int, default=None,
                        help="evaluate on the first N test examples only (for smoke tests)")
    parser.add_argument("--no-progress", action="store_true",
                        help="hide the progress bars (also TFDS's while it builds a dataset)")


def _add_augmentation_arguments(parser: argparse.ArgumentParser, recipe: Recipe) -> None:
    on_off = {True: "on", False: "off"}
    parser.add_argument("--random-crop", action=argparse.BooleanOptionalAction,
                        default=recipe.random_crop,
                        help=f"augment the training images: a random crop of the image "
                             f"zero-padded by --crop-padding pixels, offsets drawn per image and "
                             "epoch from the run's seed, the same in torch and JAX; the test set "
                             f"is never augmented (default: {on_off[recipe.random_crop]})")
    parser.add_argument("--crop-padding", type=positive_int, default=recipe.crop_padding,
                        help="the zero padding --random-crop cuts its crops from "
                             "(default: %(default)s)")
    parser.add_argument("--hflip", action=argparse.BooleanOptionalAction, default=recipe.hflip,
                        help="augment the training images: mirror each one left to right with "
                             "probability 0.5, drawn per image and epoch from the run's seed, "
                             f"the same in torch and JAX (default: {on_off[recipe.hflip]})")


def _add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=positive_int, default=1,
                        help="start this many demo processes on this version and framework, the "
                             "cores divided among them, --runs shared out; each claims its own "
                             "runs (demos/claims.py), so any number of demos, on this machine or "
                             "others sharing the results folder, may train one version at once "
                             "(default: %(default)s)")
    parser.add_argument("--lease-seconds", type=lease_seconds, default=DEFAULT_LEASE_SECONDS,
                        help="this demo renews its claim on the run it trains every quarter of "
                             "this; a claim not renewed for twice this (a demo killed on another "
                             "machine) is taken over by the next demo that looks (default: "
                             "%(default)s)")

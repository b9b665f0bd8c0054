"""The demos, one entry per dataset: everything the code knows per dataset comes from here.

A :class:`Demo` is a dataset's name and title, its loader module (in
:mod:`demos.data`), the network trained on it and its default recipe. The
command line (its defaults, ``--data-dir``'s help, ``python -m demos``), the
results store's dataset names and ``show_results.py``'s titles are read
from :data:`DEMOS`. Adding a dataset is one entry here and one loader module
(README, "Add a dataset").

Importing it is cheap, standard library only (the results store validates
dataset names with it): a loader module, and with it NumPy, is imported
when the demo's data is first asked for.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

from .architectures import CIFAR10, FASHION_MNIST, Architecture
from .gallery import CIFAR10_ENTRIES, FASHION_MNIST_ENTRIES, Entry
from .recipe import REFERENCE, Recipe

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from .data import ImageDataset

__all__ = ["Demo", "DEMOS", "REFERENCE_ARCH", "names", "get", "load_dataset"]

#: The ``--arch`` name of each demo's own network (the default).
REFERENCE_ARCH = "reference"


@dataclass(frozen=True)
class Demo:
    """One dataset and how the demos train on it.

    Attributes:
        name: the dataset's name in commands, records and paths
            (``results/<name>/...``): lowercase letters, digits, underscores.
        title: its name for people (plot titles, ``--data-dir``'s help).
        loader: the module that loads it, with
            ``load(data_dir=None, *, tfds_data_dir=None, verify_checksum=True)``
            returning a :class:`~demos.data.ImageDataset` named ``name``, and
            ``LOCAL_FILES``, what ``--data-dir`` holds for it.
        architecture: the network trained on it by default (``--arch reference``,
            :mod:`demos.architectures`).
        recipe: its default epochs, batch size, peak learning rate and seed.
        gallery: the other networks ``--arch`` selects, each with its recipe
            (:class:`demos.gallery.Entry`).
    """

    name: str
    title: str
    loader: str
    architecture: Architecture
    recipe: Recipe = REFERENCE
    gallery: tuple[Entry, ...] = ()

    def entries(self) -> dict[str, Entry]:
        """``--arch`` name -> entry: ``reference`` (this demo's network and recipe) first."""
        reference = Entry(REFERENCE_ARCH, self.architecture, self.recipe,
                          notes="the reference network of brohrer/sharpened_cosine_similarity_torch")
        return {REFERENCE_ARCH: reference, **{entry.name: entry for entry in self.gallery}}

    def entry(self, arch: str) -> Entry:
        """The entry ``--arch arch`` selects.

        Raises:
            ValueError: unknown ``arch`` (the message names the dataset and lists the choices).
        """
        entries = self.entries()
        if not isinstance(arch, str) or arch not in entries:
            raise ValueError(f"arch: expected one of {', '.join(entries)} for {self.name}, got {arch!r}")
        return entries[arch]

    def loader_module(self) -> ModuleType:
        """:attr:`loader`, imported now if it was not yet."""
        return importlib.import_module(self.loader)

    def load(self, data_dir=None, **options) -> ImageDataset:
        """The dataset, by the loader's ``load(data_dir, *, tfds_data_dir, verify_checksum)``."""
        return self.loader_module().load(data_dir, **options)


#: The demos by name, in the order tables, plots and choices list them.
DEMOS: dict[str, Demo] = {
    demo.name: demo for demo in (
        Demo("fashion_mnist", "Fashion-MNIST", "demos.data.fashion_mnist", FASHION_MNIST,
             gallery=FASHION_MNIST_ENTRIES),
        Demo("cifar10", "CIFAR-10", "demos.data.cifar10", CIFAR10, gallery=CIFAR10_ENTRIES),
    )
}


def names() -> tuple[str, ...]:
    """The registered datasets' names, in registry order."""
    return tuple(DEMOS)


def get(name: str) -> Demo:
    """The demo of dataset ``name``.

    Raises:
        ValueError: unknown ``name`` (the message lists the choices).
    """
    try:
        return DEMOS[name]
    except (KeyError, TypeError):
        raise _unknown(name) from None


def load_dataset(name: str, data_dir=None, *, tfds_data_dir=None,
                 verify_checksum: bool = True) -> ImageDataset:
    """Loads dataset ``name`` with its demo's loader (``"fashion-mnist"``, ``"cifar-10"`` accepted too).

    Returns:
        :class:`~demos.data.ImageDataset` (NHWC float32 images in [0, 1], int32 labels).

    Raises:
        ValueError: unknown ``name`` (the message lists the choices).
        DataFileError, DataUnavailableError: as the loader.
    """
    key = name.strip().lower().replace("-", "_")
    key = {"cifar_10": "cifar10"}.get(key, key)
    if key not in DEMOS:
        raise _unknown(name)
    return DEMOS[key].load(data_dir, tfds_data_dir=tfds_data_dir, verify_checksum=verify_checksum)


def _unknown(name) -> ValueError:
    return ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DEMOS)}")

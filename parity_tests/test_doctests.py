"""The ``Examples`` of scs_torch and scs_jax run as doctests, and every public name has some.

Every module of both libraries is searched (``doctest.DocTestFinder``, the
examples of the objects a module defines); a failing example fails its
module's test with doctest's report. So that this cannot pass on an empty
collection, each library must hold at least :data:`MIN_EXAMPLES` examples and
every function and class named in a public module's ``__all__`` must carry
an example of its own.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

import scs_jax
import scs_torch

LIBRARIES = (scs_torch, scs_jax)
#: Fewest ``>>>`` examples per library (each has over 60 today).
MIN_EXAMPLES = 50
OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def library_modules(library: ModuleType) -> list[ModuleType]:
    """The package and every module in it."""
    names = [f"{library.__name__}.{info.name}" for info in pkgutil.iter_modules(library.__path__)]
    return [library] + [importlib.import_module(name) for name in sorted(names)]


def doctests_of(module: ModuleType) -> list[doctest.DocTest]:
    return [test for test in doctest.DocTestFinder().find(module) if test.examples]


@pytest.mark.parametrize(
    "module_name", [m.__name__ for library in LIBRARIES for m in library_modules(library)]
)
def test_examples_pass(module_name):
    module = importlib.import_module(module_name)
    runner = doctest.DocTestRunner(optionflags=OPTIONS)
    report: list[str] = []
    for test in doctests_of(module):
        runner.run(test, out=report.append)
    results = runner.summarize(verbose=False)
    assert results.failed == 0, "".join(report)


@pytest.mark.parametrize("library", LIBRARIES, ids=lambda lib: lib.__name__)
def test_every_public_function_and_class_has_an_example(library):
    missing, counted = [], 0
    for module in library_modules(library):
        if module.__name__.rpartition(".")[2].startswith("_"):
            continue
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if inspect.isfunction(obj) or inspect.isclass(obj):
                counted += 1
                if ">>>" not in (inspect.getdoc(obj) or ""):
                    missing.append(f"{module.__name__}.{name}")
    assert counted >= 10, f"{library.__name__}: only {counted} public functions and classes found"
    assert not missing, f"no Examples in the docstrings of {missing}"


@pytest.mark.parametrize("library", LIBRARIES, ids=lambda lib: lib.__name__)
def test_enough_examples(library):
    count = sum(len(test.examples) for m in library_modules(library) for test in doctests_of(m))
    assert count >= MIN_EXAMPLES, f"{library.__name__}: {count} examples, expected at least {MIN_EXAMPLES}"

"""How scs_torch and scs_jax are laid out: twin modules, small files, no reaching into private names.

* the two packages hold the same modules, file for file (``compiled.py``,
  torch's opt-in ``torch.compile`` kernels, has no JAX twin);
* no module is longer than :data:`MAX_MODULE_LINES` lines, no function or
  method longer than :data:`MAX_FUNCTION_LINES` (docstring included);
* no module uses another module's private (``_name``) attribute or import;
* ``import scs_torch`` loads no JAX, ``import scs_jax`` no torch;
* each package ships a ``py.typed`` marker (PEP 561).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIBRARIES = ("scs_torch", "scs_jax")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
TORCH_ONLY = {"compiled.py"}


def sources(library: str) -> list[Path]:
    return sorted((ROOT / library).glob("*.py"))


def test_twin_modules():
    torch_files = {path.name for path in sources("scs_torch")}
    jax_files = {path.name for path in sources("scs_jax")}
    assert torch_files - TORCH_ONLY == jax_files


@pytest.mark.parametrize("library", LIBRARIES)
def test_small_modules_and_functions(library):
    too_long = []
    for path in sources(library):
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            too_long.append(f"{path.name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                if node.end_lineno - start + 1 > MAX_FUNCTION_LINES:
                    too_long.append(f"{path.name}:{node.lineno} {node.name}: {node.end_lineno - start + 1} lines")
    assert not too_long, too_long


def _private_uses(tree: ast.AST) -> list[str]:
    """``from m import _name`` and ``module._name`` where ``module`` was imported (dunders aside).

    The package's private modules (``_sharpen``, ``_checks``, ...) are its
    own: importing one, and its public names, is allowed.
    """
    imported, uses = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            for alias in node.names:
                imported.add(alias.asname or alias.name)
                # `from . import _module` takes a package-internal module, not a private name
                if alias.name.startswith("_") and node.module is not None:
                    uses.append(f"line {node.lineno}: from {node.module or '.'} import {alias.name}")
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in imported
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            uses.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
    return uses


@pytest.mark.parametrize("library", LIBRARIES)
def test_no_module_uses_another_modules_private_names(library):
    found = {path.name: _private_uses(ast.parse(path.read_text())) for path in sources(library)}
    assert not {name: uses for name, uses in found.items() if uses}


@pytest.mark.parametrize("library,foreign", [("scs_torch", "jax"), ("scs_jax", "torch")])
def test_import_loads_no_other_framework(library, foreign):
    modules = " ".join(f"{library}.{path.stem}" for path in sources(library) if path.stem != "__init__")
    code = (
        f"import importlib, sys\n"
        f"for name in {modules.split()!r}: importlib.import_module(name)\n"
        f"assert {foreign!r} not in sys.modules, sorted(m for m in sys.modules if m.startswith({foreign!r}))\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=300)


@pytest.mark.parametrize("library", LIBRARIES)
def test_py_typed_marker(library):
    assert (ROOT / library / "py.typed").is_file()

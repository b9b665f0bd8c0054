"""What ``pip install sharpened-cosine-similarity[torch]`` (or ``[jax]``) puts into site-packages.

The wheel ships ``scs_torch`` and ``scs_jax`` only: never the repository's
``demos`` (which would shadow a user's own package of that name), benchmarks
or tests. Built here from a copy of the source without build isolation (no
download, a few seconds); ``tests_packaging/fresh_venvs.sh`` also installs it
with ``[torch]`` alone and ``[jax]`` alone into fresh virtual environments.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser

from helpers.demo_runs import REPO

# Not part of the source: the environment, outputs and caches.
_NOT_SOURCE = {".venv", ".git", "build", "dist", "results", "plots", ".hypothesis", "__pycache__",
               ".pytest_cache"}


def test_the_wheel_ships_the_two_libraries_only(tmp_path):
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=lambda folder, names: [
        n for n in names if n in _NOT_SOURCE or n.endswith(".egg-info")])
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--quiet", "--wheel-dir", str(tmp_path / "dist"), str(source)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("sharpened_cosine_similarity-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        requires = Parser().parsestr(archive.read(metadata).decode()).get_all("Requires-Dist")
    top = {name.split("/")[0] for name in names}
    assert top == {"scs_torch", "scs_jax", metadata.split("/")[0]}, sorted(top)
    for package in ("scs_torch", "scs_jax"):
        assert f"{package}/__init__.py" in names
    by_extra = {}
    for requirement in requires:
        name, _, marker = requirement.partition(";")
        extra = marker.split("extra ==")[-1].strip().strip("'\"") if "extra ==" in marker else ""
        by_extra.setdefault(extra, set()).add(name.split(">")[0].split("=")[0].strip())
    assert by_extra[""] == {"numpy"}
    assert by_extra["torch"] == {"torch"}
    assert by_extra["jax"] == {"jax", "flax", "optax"}

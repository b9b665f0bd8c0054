#!/usr/bin/env bash
# What a user gets from `pip install "sharpened-cosine-similarity[torch]"` (or [jax]):
# builds the wheel and the sdist of this checkout with `python -m build`, lists
# them, then installs the wheel with [torch] alone and with [jax] alone into fresh
# virtual environments and, from outside the repository, imports each library:
# it works, the other framework is neither installed nor imported, and there is
# no `demos` to import. Slow (fresh venvs, jax from the registry, torch from the
# constraints file's CPU build): not part of `pytest parity_tests`, whose
# test_packaging.py checks the wheel's contents cheaply.
#
#   bash tests_packaging/fresh_venvs.sh
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The checkout's files (tracked and untracked, not ignored), so that the build
# leaves nothing in the repository.
mkdir "$work/src"
git ls-files -z --cached --others --exclude-standard | xargs -0 tar -cf - | tar -xf - -C "$work/src"

echo "== build"
python3 -m venv "$work/build-env"
"$work/build-env/bin/pip" install -q build 2>&1 | grep -v "^WARNING: Location" || true
"$work/build-env/bin/python" -m build --outdir "$work/dist" "$work/src" > "$work/build.log" 2>&1 \
  || { cat "$work/build.log"; exit 1; }
wheel=$(ls "$work"/dist/*.whl)
sdist=$(ls "$work"/dist/*.tar.gz)
echo "-- $(basename "$wheel"):"
python3 -m zipfile -l "$wheel" | awk 'NR > 1 {print "   " $1}'
echo "-- $(basename "$sdist"):"
tar -tzf "$sdist" | sed 's/^/   /'
python3 - "$wheel" <<'PY'
import sys, zipfile
top = {n.split("/")[0] for n in zipfile.ZipFile(sys.argv[1]).namelist()}
assert {t for t in top if not t.endswith(".dist-info")} == {"scs_torch", "scs_jax"}, top
print("wheel: scs_torch and scs_jax only")
PY

check() {  # check EXTRA LIBRARY OTHER: a fresh venv with the wheel[EXTRA]
  local extra=$1 library=$2 other=$3 env="$work/env-$1"
  echo "== pip install 'sharpened-cosine-similarity[$extra]' in a fresh venv"
  python3 -m venv "$env"
  "$env/bin/pip" install -q -c "$repo/constraints-cpu.txt" "$wheel[$extra]" 2>&1 \
    | grep -v "^WARNING: Location" || true
  (cd "$work" && "$env/bin/python" - "$library" "$other" <<'PY'
import importlib, importlib.util, sys
library, other = sys.argv[1:]
module = importlib.import_module(library)
if library == "scs_torch":
    import torch
    y = module.SharpenedCosineSimilarity2d(1, 2, 3)(torch.rand(4, 1, 6, 6))
else:
    import jax.numpy as jnp
    from flax import nnx
    y = module.SharpenedCosineSimilarity(1, 2, 3, rngs=nnx.Rngs(0))(jnp.ones((4, 6, 6, 1)))
frameworks = {"scs_torch": "torch", "scs_jax": "jax"}
assert frameworks[other] not in sys.modules, f"{library} imported {frameworks[other]}"
assert importlib.util.find_spec(frameworks[other]) is None, f"{frameworks[other]} is installed"
assert importlib.util.find_spec(other) is not None  # the wheel ships both libraries
assert importlib.util.find_spec("demos") is None, "a `demos` package was installed"
print(f"import {library}: ok (output {tuple(y.shape)}), from {module.__file__}; "
      f"{frameworks[other]} not installed, not imported; no demos")
PY
  )
}
check torch scs_torch scs_jax
check jax scs_jax scs_torch
echo "packaging: all passed"

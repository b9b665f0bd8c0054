"""The derandomized draws depend on the test alone, not on what was imported before it."""

from __future__ import annotations

import importlib

from hypothesis import given, settings
from hypothesis import strategies as st


def _draws() -> list:
    seen = []

    @settings(max_examples=100, derandomize=True, database=None)
    @given(st.floats(0.0, 1e6), st.integers(0, 10**9), st.text(max_size=8))
    def record(number, integer, text):
        seen.append((number, integer, text))

    record()
    return seen


def test_draws_do_not_depend_on_imported_modules(tmp_path, monkeypatch):
    before = _draws()
    # A "local" module (outside site-packages) full of constants hypothesis would mix in.
    module = tmp_path / "module_with_fresh_constants.py"
    module.write_text(
        "".join(f"C{i} = {value!r}\n" for i, value in enumerate(
            [123456.789, 987654321, 0.000123, 42424.5, "scs-constant", 31337, 271828.18, 999999937]))
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("module_with_fresh_constants")
    assert _draws() == before

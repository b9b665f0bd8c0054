"""Counting what JAX compiles, from its own compile log (``jax.log_compiles``), not from timings."""

from __future__ import annotations

import logging
import re

import jax

__all__ = ["CompileLog"]

_COMPILING = re.compile(r"Compiling (?:jit\()?(\w+)")


class CompileLog(logging.Handler):
    """Collects the names of the functions JAX compiles while installed on the ``jax`` logger."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.names: list[str] = []

    def emit(self, record):
        match = _COMPILING.match(record.getMessage())
        if match:
            self.names.append(match.group(1))

    def __enter__(self):
        self._logger = logging.getLogger("jax")
        self._level = self._logger.level
        self._logger.addHandler(self)
        self._logger.setLevel(logging.DEBUG)
        self._context = jax.log_compiles(True)
        self._context.__enter__()
        return self

    def __exit__(self, *exc):
        self._context.__exit__(*exc)
        self._logger.removeHandler(self)
        self._logger.setLevel(self._level)

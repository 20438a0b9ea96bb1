"""Optional parts of wfkit live in extras; importing one that is missing says which to install."""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""


def require(module: str, extra: str, *, purpose: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming ``pip install "wfkit[extra]"``."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] != module.split(".")[0]:
            raise  # the module exists but something it imports is broken: show that instead
        raise MissingExtraError(
            f"{purpose} needs {module.split('.')[0]!r}, which is not installed; "
            f'install it with: pip install "wfkit[{extra}]"'
        ) from exc

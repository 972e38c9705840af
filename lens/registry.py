"""Backends are named in a table per stage ("name" -> "module:Class") and imported on first use,
so that choosing one backend never imports the heavy dependencies of the others."""

from __future__ import annotations

import importlib
from typing import Any

from lens.errors import LensError


class UnknownBackendError(LensError):
    exit_code = 2


def load_backend(stage: str, name: str, table: dict[str, str]) -> Any:
    """The class registered for `name` in a stage's backend table."""
    try:
        target = table[name]
    except KeyError:
        known = ", ".join(sorted(table)) or "none"
        raise UnknownBackendError(f"unknown {stage} backend '{name}' (known: {known})") from None
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attr)

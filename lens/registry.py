"""Backends are named in a table per stage ("name" -> "module:Class") and imported on first use,
so that choosing one backend never imports the heavy dependencies of the others.

A backend with settings of its own declares them in its file as `Options`, a BackendOptions
model; the operator sets them under the stage's `options` (lens.toml `[ocr.options]`, or
`LENS_OCR__OPTIONS__LANGUAGES='["vi"]'`), and config checks them against that model when the
backend is chosen, so that a typo fails at start and names the backend."""

from __future__ import annotations

import contextlib
import importlib
import json
from typing import Any, Self

from pydantic import BaseModel, ConfigDict

from lens.errors import LensError


class UnknownBackendError(LensError):
    exit_code = 2


class BackendOptions(BaseModel):
    """A backend's own settings (none by default: any option given is an error)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Self:
        """Validated options; a value from the environment arrives as text, so a JSON list or
        object in it is decoded first (numbers and booleans pydantic converts itself)."""
        decoded = {}
        for key, value in raw.items():
            if isinstance(value, str) and value.startswith(("[", "{")):
                with contextlib.suppress(json.JSONDecodeError):
                    value = json.loads(value)
            decoded[key] = value
        return cls.model_validate(decoded)


def options_of(backend_class: Any) -> type[BackendOptions]:
    return getattr(backend_class, "Options", BackendOptions)


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

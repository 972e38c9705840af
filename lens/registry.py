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
from typing import TYPE_CHECKING, Any, Self

from pydantic import BaseModel, ConfigDict

from lens.errors import LensError

if TYPE_CHECKING:
    from pathlib import Path

    from lens.config import Settings
    from lens.stages import Stage


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


def backend_model_files(stage: str, backend_class: Any, settings: Settings) -> list[Path]:
    """The model files (or folders) a backend loads: its own `model_files(settings)` where
    that depends on settings (a path the operator set, a folder of installed pairs), else the
    manifest entries it names in `models`, else the stage's default manifest entries."""
    from lens.models import load_manifest

    if hasattr(backend_class, "model_files"):
        return list(backend_class.model_files(settings))
    model_path = getattr(getattr(settings, stage), "model_path", None)
    if model_path:  # the operator's file replaces the backend's default model
        return [model_path]
    names = getattr(backend_class, "models", None)
    specs = [spec for spec in load_manifest() if spec.stage == stage
             and (spec.name in names if names is not None else spec.default)]
    return [path for path in (spec.locate(settings) for spec in specs) if path is not None]


def stage_version(stage: Stage, settings: Settings) -> str:
    """A stage's identity in a result's cache key: its backend (name and code version), a
    fingerprint of the model files that backend loads, and a digest of its section and of
    the other settings that decide its output (`Stage.decided_by`). Importing a backend class
    loads no model, so the gateway computes this without one."""
    from lens.models import fingerprint, settings_digest

    params = []
    for name in ((stage.name,) if stage.backends else ()) + stage.decided_by:
        section, _, field = name.partition(".")
        value = getattr(settings, section)
        value = getattr(value, field) if field else value
        params.append(value.model_dump(mode="json") if isinstance(value, BaseModel) else value)
    parts = [f"params-{settings_digest(params)}"]
    if stage.backends:
        backend = getattr(settings, stage.name).backend
        backend_class = load_backend(stage.name, backend, importlib.import_module(stage.backends).BACKENDS)
        files = backend_model_files(stage.name, backend_class, settings)
        code = getattr(backend_class, "version", None)
        parts[:0] = [backend, *([code] if isinstance(code, str) else []),
                     f"models-{settings_digest([fingerprint(f) for f in files])}"]
    return ":".join(parts)

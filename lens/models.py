"""Where model files come from: the manifest in models/manifest.toml, their status, preparation.

No code here downloads anything unless asked to (`lens models prepare --fetch NAME`), so a
missing model is an immediate error naming the file and how to get it, never a hang.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import json
import shutil
import tomllib
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lens.config import REPO_ROOT, Settings
from lens.errors import LensError, ModelMissingError

MANIFEST = REPO_ROOT / "models" / "manifest.toml"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    stage: str
    description: str
    source: str
    licence: str
    default: bool = False
    builtin: bool = False
    file: str | None = None
    package: str | None = None
    glob: str | None = None
    prepare: str | None = None
    # "module:function" (spec, settings) -> bool: is a prepared file still what prepare would
    # make now (e.g. an export from weights since upgraded)? False makes prepare run again.
    current: str | None = None
    url: str | None = None
    sha256: str | None = None
    extra: dict = field(default_factory=dict)

    def expected_path(self, settings: Settings) -> Path | None:
        """Where the file should be (even if it is not there yet)."""
        if self.file:
            return settings.model_dir / self.file
        if self.package:
            root = package_dir(self.package)
            if root is None:
                return None
            matches = sorted(root.glob(self.glob or "*"))
            return matches[-1] if matches else root / (self.glob or "")
        return None

    def locate(self, settings: Settings) -> Path | None:
        """The file if it is present, else None."""
        if self.builtin:
            return None
        path = self.expected_path(settings)
        return path if path is not None and path.exists() else None

    def is_ready(self, settings: Settings) -> bool:
        return self.builtin or self.locate(settings) is not None

    def how_to_get(self, settings: Settings) -> str:
        if self.prepare:
            return "run `lens models prepare`"
        if self.package:
            return f"install {self.source}"
        if self.url:
            return f"run `lens models prepare --fetch {self.name}` with network, or copy it from {self.url}"
        return f"get it from {self.source}"


def package_dir(package: str) -> Path | None:
    """The folder of an installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def load_manifest(path: Path = MANIFEST) -> list[ModelSpec]:
    # Parsed once per version of the file: every analysis's model_versions() asks for it, and
    # parsing the TOML cost ~6 ms a photo on a quiet core.
    stat = path.stat()
    return list(_parse_manifest(str(path), stat.st_size, stat.st_mtime_ns))


@functools.lru_cache(maxsize=8)
def _parse_manifest(path: str, size: int, mtime_ns: int) -> tuple[ModelSpec, ...]:
    data = tomllib.loads(Path(path).read_text())
    known = set(ModelSpec.__dataclass_fields__)
    specs = []
    for entry in data.get("model", []):
        extra = {k: v for k, v in entry.items() if k not in known}
        specs.append(ModelSpec(**{k: v for k, v in entry.items() if k in known}, extra=extra))
    return tuple(specs)


def get_spec(name: str) -> ModelSpec:
    for spec in load_manifest():
        if spec.name == name:
            return spec
    raise LensError(f"no model named '{name}' in {MANIFEST}")


def require(name: str, settings: Settings) -> Path:
    """The model's file, or ModelMissingError saying which file is missing and how to get it."""
    spec = get_spec(name)
    path = spec.locate(settings)
    if path is None:
        where = spec.expected_path(settings)
        raise ModelMissingError(
            f"model '{name}' is missing (expected {where or spec.source}); {spec.how_to_get(settings)}"
        )
    return path


def _call(target: str, spec: ModelSpec, settings: Settings):
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)(spec, settings)


def prepare(settings: Settings, names: list[str] | None = None, log=print) -> list[ModelSpec]:
    """Make the default set (or `names`) ready; idempotent. Returns the specs still missing."""
    specs = [s for s in load_manifest() if (s.name in names if names else s.default)]
    missing = []
    for spec in specs:
        if spec.is_ready(settings) and not (spec.current and not _call(spec.current, spec, settings)):
            continue
        if spec.prepare:
            log(f"preparing {spec.name} ...")
            _call(spec.prepare, spec, settings)
        if not spec.is_ready(settings):
            missing.append(spec)
    return missing


def fetch(spec: ModelSpec, settings: Settings, timeout: float = 30.0) -> Path:
    """Download a model that has a URL (needs network); atomic, checksum-verified when known."""
    if not spec.url or not spec.file:
        raise LensError(f"model '{spec.name}' has no download URL; {spec.how_to_get(settings)}")
    from lens.files import atomic_output

    dest = settings.model_dir / spec.file
    try:
        with atomic_output(dest) as tmp:
            with tmp.open("wb") as out, urllib.request.urlopen(spec.url, timeout=timeout) as resp:
                shutil.copyfileobj(resp, out)
            if spec.sha256 and file_sha256(tmp) != spec.sha256:
                raise LensError(f"{spec.url}: checksum mismatch, not installed")
    except OSError as exc:
        raise LensError(f"could not download {spec.url}: {exc}") from None
    return dest


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def settings_digest(value: Any) -> str:
    """A short stable hash of settings (any JSON-able value; paths as text)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:12]


def fingerprint(path: Path) -> str:
    """A model file's sha256 (computed once per size and mtime); a folder's file names, sizes
    and mtimes (model folders are large, and are replaced rather than edited in place)."""
    try:
        stat = path.stat()
    except OSError:
        return "missing"
    if path.is_dir():
        entries = sorted((str(f.relative_to(path)), f.stat().st_size, f.stat().st_mtime_ns)
                         for f in path.rglob("*") if f.is_file())
        return settings_digest(entries)
    return _cached_sha256(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _cached_sha256(path: str, size: int, mtime_ns: int) -> str:
    """Cached by (path, size, mtime): the gateway asks for every request's cache key."""
    return file_sha256(Path(path))[:16]

"""The catalog as the gateway sees it: is one built, and who may write to it."""

from __future__ import annotations

import hmac
import json
from typing import Any

from lens.config import Settings
from web.errors import ApiError


def catalog_status(settings: Settings) -> dict[str, Any]:
    """Whether a catalog exists on disk (the workers open it; the gateway never loads it)."""
    folder = settings.catalog_dir
    if not folder.is_dir() or not any(folder.iterdir()):
        return {"ok": False, "detail": (
            f"no catalog in {folder}; build one with `lens index add <folder>` or `lens demo-catalog`")}
    return {"ok": True, "detail": str(folder)}


def catalog_stamp(settings: Settings) -> str:
    """Which saved state of the catalog a result's matches come from: part of the result cache
    key, so that adding or removing items (API or CLI) is not answered from an older cache."""
    try:
        meta = json.loads((settings.catalog_dir / "catalog.json").read_text())
    except (OSError, ValueError):
        return "none"
    return f"{meta.get('generation')}:{meta.get('saved_at')}"


def require_api_key(settings: Settings, authorization: str | None) -> None:
    """Catalog writes need `Authorization: Bearer <api_key>`; without a key they are off."""
    if settings.api_key is None or not settings.api_key.get_secret_value():
        raise ApiError(503, "writes_disabled", (
            "catalog writes are disabled because no API key is configured; "
            "set LENS_API_KEY (or api_key in lens.toml) on the server"))
    scheme, _, token = (authorization or "").partition(" ")
    expected = settings.api_key.get_secret_value().encode()
    # Constant-time comparison: the time taken says nothing about how much of a guess matched.
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected):
        raise ApiError(401, "unauthorized", "catalog writes need 'Authorization: Bearer <api key>'",
                       headers={"WWW-Authenticate": 'Bearer realm="lens"'})

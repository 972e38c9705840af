"""The catalog as the gateway sees it: is one built, and who may write to it."""

from __future__ import annotations

from typing import Any

from lens.config import Settings
from lens.errors import LensError


def catalog_status(settings: Settings) -> dict[str, Any]:
    """Whether a catalog exists (the workers open it; the gateway never loads it)."""
    if settings.catalog.backend != "sqlite":
        from lens.index import catalog_state as peek

        try:
            found = peek(settings) is not None
        except LensError as exc:
            return {"ok": False, "detail": exc.message}
        return {"ok": found, "detail": f"{settings.catalog.backend} catalog" if found else (
            "no catalog yet; build one with `lens index add <folder>` or `lens demo-catalog`")}
    folder = settings.catalog_dir
    if not folder.is_dir() or not any(folder.iterdir()):
        return {"ok": False, "detail": (
            f"no catalog in {folder}; build one with `lens index add <folder>` or `lens demo-catalog`")}
    return {"ok": True, "detail": str(folder)}


def catalog_state(settings: Settings) -> str:
    """Which catalog, and which of its states, a search would see: the embedder that built it
    (name and version, preprocessing included), its creation time (a rebuilt catalog is another
    one) and its count of committed writes. Part of the result cache key, so an analysis
    cached before an add, update or delete is never served after it."""
    from lens.index import catalog_state as peek

    state = peek(settings)
    if state is None:
        return "none"
    meta, writes = state
    embedder = meta.get("embedder") or {}
    return f"{embedder.get('name')}:{embedder.get('version')}:{meta.get('created_at')}:{writes}"

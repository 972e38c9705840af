"""The operator's catalog: item metadata in SQLite (or PostgreSQL) plus a vector index (faiss,
or Milvus: lens/index/stores)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lens.config import Settings
from lens.registry import load_backend

if TYPE_CHECKING:
    from lens.index.catalog import Catalog

# Where the metadata lives (config `catalog.backend`).
BACKENDS = {
    "sqlite": "lens.index.catalog:Catalog",
    "postgres": "lens.index.postgres:PostgresCatalog",
}


def open_catalog(settings: Settings, embedder, *, create: bool = False) -> Catalog | None:
    """The configured catalog; None when none has been built (unless `create`).

    Raises CatalogMismatchError (a LensError) when it was built with another embedder.
    """
    return load_backend("catalog", settings.catalog.backend, BACKENDS).open(settings, embedder, create=create)


def catalog_state(settings: Settings) -> tuple[dict, int] | None:
    """(the catalog's meta, its count of committed writes), read cheaply without opening it
    (no embedder, no vectors), for the gateway's result-cache key; None: no catalog."""
    return load_backend("catalog", settings.catalog.backend, BACKENDS).peek(settings)


__all__ = ["BACKENDS", "catalog_state", "open_catalog"]

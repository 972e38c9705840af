"""The operator's catalog: item metadata in SQLite plus a faiss vector index."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lens.config import Settings

if TYPE_CHECKING:
    from lens.index.catalog import Catalog


def open_catalog(settings: Settings, embedder, *, create: bool = False) -> Catalog | None:
    """The catalog in settings.catalog_dir; None when none has been built (unless `create`).

    Raises CatalogMismatchError (a LensError) when it was built with another embedder.
    """
    from lens.index.catalog import Catalog

    return Catalog.open(settings, embedder, create=create)


__all__ = ["open_catalog"]

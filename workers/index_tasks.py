"""Catalog writes, all on the `index` queue so that one process owns the SQLite + faiss files.

After each write the catalog version in the store goes up; every other process reopens its
catalog on its next search (Runtime.pipeline).
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from lens.errors import LensError


class CatalogUnavailableError(LensError):
    http_status = 503
    code = "catalog_unavailable"


class ItemNotFoundError(LensError):
    http_status = 404
    code = "item_not_found"


def open_writable_catalog(runtime):
    catalog = runtime.pipeline().catalog
    if catalog is None:
        raise CatalogUnavailableError(
            "no catalog has been built yet; run `lens index <folder>` (or `lens demo-catalog`)"
        )
    return catalog


def item_json(item: Any) -> dict[str, Any]:
    if hasattr(item, "model_dump"):
        return item.model_dump(mode="json")
    if hasattr(item, "__dataclass_fields__"):
        from dataclasses import asdict

        return {k: (str(v) if hasattr(v, "__fspath__") else v) for k, v in asdict(item).items()}
    return dict(item)


def _as_data(fn, runtime, *args, write: bool = True) -> dict[str, Any]:
    """Run a write; typed errors come back as data (Celery's JSON cannot carry our classes)."""
    try:
        out = fn(open_writable_catalog(runtime), *args)
    except LensError as exc:
        return {"error": {"code": exc.code, "message": exc.message, "status": exc.http_status}}
    except KeyError as exc:
        return {"error": {"code": "item_not_found", "message": f"no item {exc}", "status": 404}}
    if write:
        runtime.catalog_changed()
    return out


def _add(catalog, upload_path: str, fields: dict[str, Any]) -> dict[str, Any]:
    item = catalog.add_image(upload_path, **fields)
    return {"item": item_json(item)}


def _update(catalog, item_id: int, fields: dict[str, Any]) -> dict[str, Any]:
    item = catalog.update(item_id, **fields)
    return {"item": item_json(item)}


def _remove(catalog, item_id: int) -> dict[str, Any]:
    catalog.remove(item_id)
    return {"deleted": item_id}


def _get(catalog, item_id: int) -> dict[str, Any]:
    item = catalog.get(item_id)
    if item is None:
        raise ItemNotFoundError(f"no item {item_id} in the catalog")
    path = catalog.thumbnail_path(item_id)
    return {"item": item_json(item), "thumbnail_path": str(path) if path else None}


def register_index_tasks(app: Celery) -> None:
    runtime = app.lens

    @app.task(name="lens.item")
    def get(item_id: int) -> dict[str, Any]:
        """A read: served by any vision worker (catalog open there already)."""
        return _as_data(_get, runtime, item_id, write=False)

    @app.task(name="lens.index.add")
    def add(upload_path: str, fields: dict[str, Any]) -> dict[str, Any]:
        runtime.jobs.count_task("index.add")
        return _as_data(_add, runtime, upload_path, fields)

    @app.task(name="lens.index.update")
    def update(item_id: int, fields: dict[str, Any]) -> dict[str, Any]:
        runtime.jobs.count_task("index.update")
        return _as_data(_update, runtime, item_id, fields)

    @app.task(name="lens.index.remove")
    def remove(item_id: int) -> dict[str, Any]:
        runtime.jobs.count_task("index.remove")
        return _as_data(_remove, runtime, item_id)

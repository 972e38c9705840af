"""Catalog writes, all on the `index` queue so that one process owns the SQLite + faiss files.

After each write the catalog version in the store goes up; every other process reopens its
catalog on its next search (Runtime.pipeline).
"""

from __future__ import annotations

import errno
import logging
import random
import time
from typing import Any

from celery import Celery

from lens.errors import LensError
from workers.uploads import upload_source

log = logging.getLogger(__name__)


class CatalogUnavailableError(LensError):
    http_status = 503
    code = "catalog_unavailable"


def open_catalog_for(runtime, *, create: bool):
    """This process's catalog; `create` makes an empty one (the first API add)."""
    pipeline = runtime.pipeline()
    catalog = pipeline.catalog
    if catalog is None and create:
        from lens.index import open_catalog

        open_catalog(runtime.settings, pipeline.embedder, create=True)
        pipeline.reload_catalog()
        catalog = pipeline.catalog
    if catalog is None:
        raise CatalogUnavailableError(
            "no catalog has been built yet; run `lens index add <folder>` (or `lens demo-catalog`), "
            "or add an item with POST /api/v1/items"
        )
    return catalog


def _error(exc: LensError, message: str | None = None) -> dict[str, Any]:
    return {"error": {"code": exc.code, "message": message or exc.message, "status": exc.http_status}}


def _as_data(fn, runtime, *args, write: bool = True, if_gone: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run a read or a write; typed errors come back as data (Celery's JSON cannot carry
    our exception classes). A write is one transaction that always ends: committed by save(),
    or rolled back whatever went wrong (a bug, a full disk), so that a failed write never
    leaves SQLite's write lock held against the next writer (`lens index add` included).

    A write that meets a passing fault (LensError.retryable: PostgreSQL restarting, Milvus
    unreachable) is rolled back and tried again on a freshly opened catalog, up to
    catalog.write_attempts times with backoff; it is idempotent, so it lands once. `if_gone`:
    the answer when a retry after a failed save finds nothing to do (ItemNotFoundError): that
    save's COMMIT reached the server before the connection broke (a delete)."""
    if not write:
        try:
            return fn(open_catalog_for(runtime, create=False), *args)
        except LensError as exc:
            return _error(exc)
    config = runtime.settings.catalog
    failed_saving = False
    for attempt in range(1, config.write_attempts + 1):
        catalog, saving = None, False
        try:
            catalog = open_catalog_for(runtime, create=True)
            out = fn(catalog, *args)
            saving = True
            catalog.save()
        except LensError as exc:
            from lens.index.catalog import ItemNotFoundError

            _roll_back(runtime, catalog, reopen=exc.retryable)
            if isinstance(exc, ItemNotFoundError) and failed_saving and if_gone is not None:
                out = if_gone
            elif exc.retryable and attempt < config.write_attempts:
                failed_saving = saving
                delay = config.write_retry_backoff_s * 2 ** (attempt - 1) * random.uniform(0.75, 1.25)
                log.warning("catalog write failed (attempt %d of %d, %s); rolled back, trying again in %.1f s",
                            attempt, config.write_attempts, exc.message, delay)
                time.sleep(delay)
                continue
            elif exc.retryable:
                return _error(exc, f"{exc.message} (tried {config.write_attempts} times)")
            else:
                return _error(exc)
        except Exception as exc:
            _roll_back(runtime, catalog, reopen=False)
            log.exception("catalog write failed; rolled back")
            full = isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
            return {"error": {"code": "storage_full" if full else "index_write_failed", "status": 507 if full else 500,
                              "message": (f"the catalog write failed ({type(exc).__name__}: {exc}); it was rolled "
                                          "back, the catalog keeps its last saved state")}}
        runtime.catalog_changed()
        return out
    raise AssertionError("unreachable: the last attempt returns")


def _roll_back(runtime, catalog, *, reopen: bool) -> None:
    """Discard the open transaction. After a passing fault (or a rollback that failed itself,
    its database still gone) the catalog is dropped, so that the next attempt or request
    opens it afresh from the committed state instead of trusting what this process holds."""
    if catalog is not None:
        try:
            catalog.discard()
        except Exception as exc:
            log.warning("rolling back the catalog write: %s", exc)
            reopen = True
    if reopen:
        runtime.pipeline().reload_catalog()


def _add(catalog, upload_ref: str, fields: dict[str, Any]) -> dict[str, Any]:
    item_id = catalog.add_image(upload_source(catalog.settings, upload_ref), **fields)
    return {"item": catalog.get(item_id).model_dump(mode="json")}


class ImageOfAnotherItemError(LensError):
    http_status = 409
    code = "image_of_another_item"


def _add_image(catalog, item_id: int, upload_ref: str) -> dict[str, Any]:
    outcome = catalog.add_reference_image(item_id, upload_source(catalog.settings, upload_ref))
    if outcome.item_id != item_id:
        raise ImageOfAnotherItemError(
            f"that image is already in the catalog as an image of item {outcome.item_id}; "
            "an image can belong to one item only")
    return {"item": catalog.get(item_id).model_dump(mode="json"), "image_id": outcome.image_id,
            "status": outcome.status}


def _update(catalog, item_id: int, fields: dict[str, Any]) -> dict[str, Any]:
    return {"item": catalog.update(item_id, **fields).model_dump(mode="json")}


def _remove(catalog, item_id: int) -> dict[str, Any]:
    from lens.index.catalog import ItemNotFoundError

    if not catalog.remove([item_id]):
        raise ItemNotFoundError(f"no catalog item with id {item_id}")
    return {"deleted": item_id}


def _get(catalog, item_id: int) -> dict[str, Any]:
    item = catalog.get(item_id)
    try:
        thumbnail = str(catalog.thumbnail_path(item_id))
    except LensError:
        thumbnail = None
    return {"item": item.model_dump(mode="json"), "thumbnail_path": thumbnail}


def _attempts_exhausted(task, runtime) -> dict[str, Any] | None:
    """A write whose process died (SIGKILL, out of memory) is redelivered (acks_late) and runs
    again, up to server.max_attempts times; then it answers with an error instead of looping,
    so that one write that kills its worker every time cannot block the index queue."""
    tries = runtime.jobs.count_try(task.request.id or "eager", "index")
    limit = runtime.settings.server.max_attempts
    if tries <= limit:
        return None
    return {"error": {"code": "index_write_failed", "status": 500, "message": (
        f"the catalog write was stopped after {limit} attempts: the index worker died each time "
        "(killed, or out of memory); the catalog keeps its last saved state")}}


def register_index_tasks(app: Celery) -> None:
    runtime = app.lens

    @app.task(name="lens.item", shared=False)
    def get(item_id: int) -> dict[str, Any]:
        """A read: served by any vision worker (catalog open there already)."""
        return _as_data(_get, runtime, item_id, write=False)

    @app.task(name="lens.index.add", shared=False, bind=True)
    def add(self, upload_ref: str, fields: dict[str, Any]) -> dict[str, Any]:
        runtime.jobs.count_task("index.add")
        return _attempts_exhausted(self, runtime) or _as_data(_add, runtime, upload_ref, fields)

    @app.task(name="lens.index.add_image", shared=False, bind=True)
    def add_image(self, item_id: int, upload_ref: str) -> dict[str, Any]:
        runtime.jobs.count_task("index.add_image")
        return _attempts_exhausted(self, runtime) or _as_data(_add_image, runtime, item_id, upload_ref)

    @app.task(name="lens.index.update", shared=False, bind=True)
    def update(self, item_id: int, fields: dict[str, Any]) -> dict[str, Any]:
        runtime.jobs.count_task("index.update")
        return _attempts_exhausted(self, runtime) or _as_data(_update, runtime, item_id, fields)

    @app.task(name="lens.index.remove", shared=False, bind=True)
    def remove(self, item_id: int) -> dict[str, Any]:
        runtime.jobs.count_task("index.remove")
        return _attempts_exhausted(self, runtime) or _as_data(_remove, runtime, item_id, if_gone={"deleted": item_id})

"""The Celery app: Redis broker and result backend in a fleet, eager (in-process) when embedded.

Queues, so that a machine can serve only some of them and load only those models:
  vision  detection, region selection, embedding, catalog search, and the light merge step
  text    OCR, language id, translation
  index   every catalog write (add/update/remove); serve it from exactly one worker process so
          that writes to the SQLite metadata and the faiss snapshot never race.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from celery import Celery

from lens.config import Settings
from workers.jobs import Jobs
from workers.store import MemoryStore, RedisStore, SqliteStore, Store, WriteThroughStore

log = logging.getLogger(__name__)
T = TypeVar("T")

QUEUES = ("vision", "text", "index")
# The embedded server's result cache on disk, relative to the data dir.
RESULT_CACHE_FILE = "cache/results.sqlite3"
ROUTES = {
    "lens.regions": {"queue": "vision"},
    "lens.merge": {"queue": "vision"},
    "lens.search": {"queue": "vision"},
    "lens.item": {"queue": "vision"},
    "lens.text": {"queue": "text"},
    "lens.index.*": {"queue": "index"},
}


class Runtime:
    """What tasks of one app share in one process: settings, the store, one lazy Pipeline."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.jobs = Jobs(settings, store, results=result_store(settings, store))
        self._pipeline = None
        self._catalog_version: str | None = None
        self._lock = threading.Lock()
        self._compute: ThreadPoolExecutor | None = None

    @property
    def embedded(self) -> bool:
        return self.settings.server.embedded

    def run(self, fn: Callable[[], T]) -> T:
        """Call fn; embedded, on the one compute thread. Some model objects (the Bergamot
        translator) may only be used by the thread that created them, and the web server gives
        every request a new thread; one compute thread also keeps two requests from running
        the same model at once."""
        if not self.embedded:
            return fn()
        return self.submit(fn).result()

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        """Queue fn on the one compute thread (embedded) without waiting for it."""
        with self._lock:
            if self._compute is None:
                self._compute = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lens-compute")
        return self._compute.submit(fn)

    def worker_name(self) -> str:
        return f"{socket.gethostname()}:{os.getpid()}"

    def pipeline(self):
        """This process's Pipeline, created on first use; reopens the catalog after writes."""
        from lens.pipeline import Pipeline

        with self._lock:
            if self._pipeline is None:
                if not self.embedded:
                    limit_threads(self.settings.server.worker_threads)
                self._pipeline = Pipeline(self.settings)
            # Catalog writes happen in the index worker; other processes learn of them here.
            version = self.store.get("catalog:version")
            if version != self._catalog_version:
                self._pipeline.reload_catalog()
                self._catalog_version = version
            return self._pipeline

    def warm_up_in_background(self, regions: bool = True, text: bool = True) -> threading.Thread:
        """Load the models this process serves on a daemon thread, so that the first photo does
        not wait seconds for them and process start stays quick (Celery's 4 s limit)."""

        def warm() -> None:
            try:
                self.run(lambda: self.pipeline().warm_up(regions=regions, text=text))
            except Exception:  # a missing model is reported by the first task that needs it
                log.exception("warm-up failed")

        thread = threading.Thread(target=warm, name="lens-warm-up", daemon=True)
        thread.start()
        return thread

    def catalog_changed(self) -> None:
        self.store.incr("catalog:version")


def limit_threads(threads: int) -> None:
    """Few compute threads per worker process: on 2 shared cores, default threading made single
    queries 3-20x slower (DESIGN.md); scale with more processes instead."""
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass
    try:
        import faiss

        faiss.omp_set_num_threads(threads)
    except ImportError:
        pass


def result_store(settings: Settings, store: Store) -> Store:
    """Embedded, with the result cache on: results also go to <data_dir>/cache/results.sqlite3,
    so a restarted server answers a photo it saw before from the cache. A fleet keeps them in
    Redis (which outlives any one process)."""
    if not settings.server.embedded or settings.server.result_cache_ttl_s <= 0:
        return store
    return WriteThroughStore(store, SqliteStore(settings.data_dir / RESULT_CACHE_FILE))


def make_store(settings: Settings) -> Store:
    return MemoryStore() if settings.server.embedded else RedisStore(settings.redis_url)


def make_celery(settings: Settings, store: Store | None = None) -> Celery:
    """A Celery app with the lens tasks registered and `app.lens` = this process's Runtime."""
    from workers.tasks import register_tasks

    server = settings.server
    app = Celery("lens", set_as_current=False)
    if server.embedded:
        broker, backend = "memory://", "cache+memory://"
    else:
        broker = backend = settings.redis_url
    app.conf.update(
        broker_url=broker,
        result_backend=backend,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        # A task is acknowledged after it ran; if its process dies it goes back to the queue.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=server.task_soft_time_limit_s,
        task_time_limit=server.task_hard_time_limit_s,
        result_expires=server.result_expires_s,
        broker_transport_options={"visibility_timeout": server.visibility_timeout_s},
        task_routes=ROUTES,
        task_default_queue="vision",
        task_always_eager=server.embedded,
        task_eager_propagates=True,
        task_store_eager_result=False,
        # Fail fast when Redis is down: the gateway answers 503 rather than hanging.
        broker_connection_timeout=2,
        broker_connection_retry_on_startup=True,
        redis_socket_connect_timeout=2,
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1},
        # A task running while the broker connection is lost is redelivered anyway (acks_late).
        worker_cancel_long_running_tasks_on_connection_loss=True,
        worker_hijack_root_logger=False,
    )
    app.lens = Runtime(settings, store or make_store(settings))
    register_tasks(app)
    return app

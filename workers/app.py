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
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from celery import Celery

from lens.config import Settings
from lens.image import DecodedImage
from lens.stages import BRANCH_NAMES, BRANCHES
from lens.threads import cpu_count
from workers.jobs import Jobs
from workers.store import MemoryStore, RedisStore, SqliteStore, Store, WriteThroughStore

log = logging.getLogger(__name__)
T = TypeVar("T")

# Each branch's queue (lens.stages), and the one catalog writer's.
QUEUES = (*dict.fromkeys(b.queue for b in BRANCHES), "index")
# The embedded server's result cache on disk, relative to the data dir.
RESULT_CACHE_FILE = "cache/results.sqlite3"
# merge, crop search and thumbnails run where the regions branch does (they load its models).
ROUTES = {
    **{f"lens.{b.name}": {"queue": b.queue} for b in BRANCHES},
    "lens.merge": {"queue": BRANCHES[0].queue},
    "lens.search": {"queue": BRANCHES[0].queue},
    "lens.search_text": {"queue": BRANCHES[0].queue},
    "lens.item": {"queue": BRANCHES[0].queue},
    "lens.index.*": {"queue": "index"},
}


class Runtime:
    """What tasks of one app share in one process: settings, the store, one lazy Pipeline."""

    # Decoded uploads kept for the branches and crop searches of the same photo (embedded):
    # at most this many, so memory stays bounded (a 50 MP photo decodes to 150 MB).
    DECODED_CACHE_ENTRIES = 4

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.jobs = Jobs(settings, store, results=result_store(settings, store))
        self._pipeline = None
        self._catalog_version: str | None = None
        self._lock = threading.Lock()
        self._compute: ThreadPoolExecutor | None = None
        # Embedded catalog writes run one at a time, as the single index worker does in a fleet.
        self._index_lock = threading.Lock()
        self._decoded: OrderedDict[str, DecodedImage] = OrderedDict()

    @property
    def embedded(self) -> bool:
        return self.settings.server.embedded

    @property
    def compute_threads(self) -> int:
        """Embedded: photos computed at once; one per core (each runs 1 intra-op thread)."""
        return self.settings.server.compute_threads or cpu_count()

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._compute is None:
                self._compute = ThreadPoolExecutor(max_workers=self.compute_threads,
                                                   thread_name_prefix="lens-compute")
            return self._compute

    def run(self, fn: Callable[[], T], *, exclusive: bool = False) -> T:
        """Call fn; embedded, on the compute pool: a fixed number of threads (one per core), so
        several requests run side by side while memory and CPU stay bounded, however many
        requests the web server's threads accept. `exclusive`: one at a time (catalog writes)."""
        if not self.embedded:
            return fn()
        if exclusive:
            def serial() -> T:
                with self._index_lock:
                    return fn()

            return self._pool().submit(serial).result()
        return self._pool().submit(fn).result()

    def run_canvas(self, canvas) -> None:
        """Send one photo's canvas (a group of branch tasks). In a fleet: to the broker. Embedded:
        its branches run side by side on the compute pool (Celery's eager group would run them
        one after the other), and this returns when both are done (the second one merges)."""
        if not self.embedded:
            canvas.apply_async()
            return
        pool = self._pool()
        futures = [pool.submit(signature.apply) for signature in canvas.tasks]
        for future in futures:
            future.result()

    def remember_decoded(self, path: str, image: DecodedImage) -> None:
        """Embedded: keep the gateway's decoded upload for this process's tasks (no re-decode)."""
        if not self.embedded:
            return
        with self._lock:
            self._decoded[path] = image
            self._decoded.move_to_end(path)
            while len(self._decoded) > self.DECODED_CACHE_ENTRIES:
                self._decoded.popitem(last=False)

    def decoded(self, path: str) -> DecodedImage | None:
        with self._lock:
            image = self._decoded.get(path)
            if image is not None:
                self._decoded.move_to_end(path)
            return image

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        """Start fn without waiting for it (embedded, a client that follows its job's stages).
        On a thread of its own, not the compute pool: fn may itself wait on the pool (a
        photo's branches), and pool threads waiting on the pool would deadlock it."""
        future: Future[T] = Future()

        def call() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to whoever looks at the future
                future.set_exception(exc)

        threading.Thread(target=call, name="lens-submit", daemon=True).start()
        return future

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

    def warm_up_in_background(self, branches: tuple[str, ...] = BRANCH_NAMES) -> threading.Thread:
        """Load the models this process serves on a daemon thread, so that the first photo does
        not wait seconds for them and process start stays quick (Celery's 4 s limit)."""

        def warm() -> None:
            try:
                self.run(lambda: self.pipeline().warm_up(branches))
            except Exception:  # a missing model is reported by the first task that needs it
                log.exception("warm-up failed")

        thread = threading.Thread(target=warm, name="lens-warm-up", daemon=True)
        thread.start()
        return thread

    def catalog_changed(self) -> None:
        self.store.incr("catalog:version")


def limit_threads(threads: int) -> None:
    """Few compute threads per worker process: on 2 shared cores, default threading made single
    queries 3-20x slower (DESIGN.md); scale with more processes instead (lens.threads)."""
    from lens.threads import apply_thread_policy

    apply_thread_policy(threads)


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
        # Recycling: a pool child past its memory (KiB here) or task budget is replaced.
        worker_max_memory_per_child=server.worker_max_memory_mb * 1024 or None,
        worker_max_tasks_per_child=server.worker_max_tasks_per_child or None,
    )
    app.lens = Runtime(settings, store or make_store(settings))
    register_tasks(app)
    return app

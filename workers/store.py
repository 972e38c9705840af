"""Small key-value state shared by the gateway and the workers: job records, branch results,
the result cache, counters. Redis in a fleet; a dict in the embedded single process, whose
results are also written to a SQLite file under the data dir (they survive a restart).

Values are strings (JSON written by the callers); every key has a time to live so that nothing
accumulates. Keys are namespaced under ``lens:``.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Protocol

import redis

from lens.errors import LensError

PREFIX = "lens:"
log = logging.getLogger(__name__)


class QueueUnavailableError(LensError):
    """Redis (the job queue and shared state) cannot be reached."""

    http_status = 503
    code = "queue_unavailable"


class Store(Protocol):
    def ping(self) -> None: ...

    def get(self, key: str) -> str | None: ...

    def set(self, key: str, value: str, ttl_s: float | None = None) -> None: ...

    def set_if_absent(self, key: str, value: str, ttl_s: float | None = None) -> bool: ...

    def incr(self, key: str, ttl_s: float | None = None) -> int: ...

    def delete(self, key: str) -> None: ...


class MemoryStore:
    """In-process store for the embedded server; expiry is checked on read."""

    def __init__(self) -> None:
        self._data: dict[str, tuple[str, float | None]] = {}
        self._lock = threading.Lock()

    def ping(self) -> None:
        return None

    def _live(self, key: str) -> str | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        value, expires = entry
        if expires is not None and expires < time.monotonic():
            del self._data[key]
            return None
        return value

    @staticmethod
    def _expiry(ttl_s: float | None) -> float | None:
        return None if not ttl_s else time.monotonic() + ttl_s

    def get(self, key: str) -> str | None:
        with self._lock:
            return self._live(key)

    def set(self, key: str, value: str, ttl_s: float | None = None) -> None:
        with self._lock:
            self._data[key] = (value, self._expiry(ttl_s))

    def set_if_absent(self, key: str, value: str, ttl_s: float | None = None) -> bool:
        with self._lock:
            if self._live(key) is not None:
                return False
            self._data[key] = (value, self._expiry(ttl_s))
            return True

    def incr(self, key: str, ttl_s: float | None = None) -> int:
        with self._lock:
            current = self._live(key)
            value = int(current or 0) + 1
            expires = self._data[key][1] if current is not None else self._expiry(ttl_s)
            self._data[key] = (str(value), expires)
            return value

    def delete(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)


@functools.lru_cache(maxsize=8)
def redis_client(url: str) -> redis.Redis:
    """The one Redis client (and connection pool) per URL in a process: the store, the rate
    limiter and the queue-depth metrics share it. Short timeouts: a request must answer 503
    quickly when Redis is gone, not hang. redis-py's pool is thread-safe and, after a fork
    (gunicorn), opens new connections in the child."""
    return redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=5.0, decode_responses=True)


class RedisStore:
    """Shared store over Redis; any connection failure becomes QueueUnavailableError."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._redis = redis_client(url)

    def _call(self, method: str, *args, **kwargs):
        try:
            return getattr(self._redis, method)(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise QueueUnavailableError(
                f"the job queue (Redis at {redacted(self.url)}) is unreachable: {exc}"
            ) from None

    def ping(self) -> None:
        self._call("ping")

    def get(self, key: str) -> str | None:
        return self._call("get", PREFIX + key)

    def set(self, key: str, value: str, ttl_s: float | None = None) -> None:
        self._call("set", PREFIX + key, value, px=_ms(ttl_s))

    def set_if_absent(self, key: str, value: str, ttl_s: float | None = None) -> bool:
        return bool(self._call("set", PREFIX + key, value, px=_ms(ttl_s), nx=True))

    def incr(self, key: str, ttl_s: float | None = None) -> int:
        value = int(self._call("incr", PREFIX + key))
        if value == 1 and ttl_s:
            self._call("pexpire", PREFIX + key, _ms(ttl_s))
        return value

    def delete(self, key: str) -> None:
        self._call("delete", PREFIX + key)


def _ms(ttl_s: float | None) -> int | None:
    return None if not ttl_s else max(1, int(ttl_s * 1000))


def redacted(url: str) -> str:
    """The URL without its password, for messages."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.split('@', 1)[1]}"


class SqliteStore:
    """Keys that must outlive the process, in one SQLite file: the embedded server's result
    cache under the data dir, so that a restart keeps it. Expiry is wall-clock time (a
    monotonic clock restarts with the process). Safe for several threads and processes."""

    # Expired rows are deleted every this many writes (reads skip them anyway).
    PRUNE_EVERY = 200

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._writes = 0
        conn = self._conn()
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires REAL)")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
            self._local.conn = conn
        return conn

    @staticmethod
    def _expiry(ttl_s: float | None) -> float | None:
        return None if not ttl_s else time.time() + ttl_s

    def ping(self) -> None:
        self._conn().execute("SELECT 1")

    def get(self, key: str) -> str | None:
        row = self._conn().execute("SELECT value, expires FROM kv WHERE key = ?", (key,)).fetchone()
        if row is None or (row[1] is not None and row[1] < time.time()):
            return None
        return row[0]

    def set(self, key: str, value: str, ttl_s: float | None = None) -> None:
        conn = self._conn()
        conn.execute("INSERT OR REPLACE INTO kv (key, value, expires) VALUES (?, ?, ?)",
                     (key, value, self._expiry(ttl_s)))
        self._writes += 1
        if self._writes % self.PRUNE_EVERY == 0:
            conn.execute("DELETE FROM kv WHERE expires IS NOT NULL AND expires < ?", (time.time(),))

    def set_if_absent(self, key: str, value: str, ttl_s: float | None = None) -> bool:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            if self.get(key) is not None:
                return False
            conn.execute("INSERT OR REPLACE INTO kv (key, value, expires) VALUES (?, ?, ?)",
                         (key, value, self._expiry(ttl_s)))
            return True
        finally:
            conn.execute("COMMIT")

    def incr(self, key: str, ttl_s: float | None = None) -> int:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = self.get(key)
            value = int(current or 0) + 1
            if current is None:
                conn.execute("INSERT OR REPLACE INTO kv (key, value, expires) VALUES (?, ?, ?)",
                             (key, str(value), self._expiry(ttl_s)))
            else:
                conn.execute("UPDATE kv SET value = ? WHERE key = ?", (str(value), key))
            return value
        finally:
            conn.execute("COMMIT")

    def delete(self, key: str) -> None:
        self._conn().execute("DELETE FROM kv WHERE key = ?", (key,))


class WriteThroughStore:
    """Reads `fast` first, then `durable`; writes go to both. The durable copy is a courtesy
    (a result that survives a restart): when its disk fails the error is logged and the job
    still completes from `fast`."""

    def __init__(self, fast: Store, durable: Store) -> None:
        self.fast = fast
        self.durable = durable

    def ping(self) -> None:
        self.fast.ping()

    def get(self, key: str) -> str | None:
        value = self.fast.get(key)
        if value is not None:
            return value
        try:
            return self.durable.get(key)
        except sqlite3.Error as exc:
            log.warning("result cache on disk unreadable: %s", exc)
            return None

    def set(self, key: str, value: str, ttl_s: float | None = None) -> None:
        self.fast.set(key, value, ttl_s)
        try:
            self.durable.set(key, value, ttl_s)
        except sqlite3.Error as exc:
            log.warning("result cache on disk not written: %s", exc)

    def set_if_absent(self, key: str, value: str, ttl_s: float | None = None) -> bool:
        return self.fast.set_if_absent(key, value, ttl_s)

    def incr(self, key: str, ttl_s: float | None = None) -> int:
        return self.fast.incr(key, ttl_s)

    def delete(self, key: str) -> None:
        self.fast.delete(key)
        try:
            self.durable.delete(key)
        except sqlite3.Error as exc:
            log.warning("result cache on disk: %s", exc)

"""Small key-value state shared by the gateway and the workers: job records, branch results,
the result cache, counters. Redis in a fleet; a dict in the embedded single process.

Values are strings (JSON written by the callers); every key has a time to live so that nothing
accumulates. Keys are namespaced under ``lens:``.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

import redis

from lens.errors import LensError

PREFIX = "lens:"


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


class RedisStore:
    """Shared store over Redis; any connection failure becomes QueueUnavailableError."""

    def __init__(self, url: str) -> None:
        self.url = url
        # Short timeouts: a request must answer 503 quickly when Redis is gone, not hang.
        self._redis = redis.Redis.from_url(
            url, socket_connect_timeout=1.0, socket_timeout=5.0, decode_responses=True
        )

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

"""Per-client rate limit on the endpoints that run models (analyze, crop search).

A token bucket per client address: `rate_limit_per_minute` tokens refill evenly, up to
`rate_limit_burst` saved up, one token per request. Over the limit the answer is 429 with
Retry-After (whole seconds until a token is back). In a fleet the buckets live in Redis, so every
gateway process shares them (one atomic Lua script per request); embedded, a dict in the process.
If Redis cannot be reached the limiter lets the request through: analyze then reports the
outage itself (503), and a broken limiter must not turn into a denial of service.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Protocol

from flask import Flask, Request, current_app, request

from lens.config import Settings
from web.errors import error_response

LIMITED_ENDPOINTS = frozenset({"api.analyze", "api.search"})
REDIS_KEY_PREFIX = "lens:ratelimit:"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after_s: float  # 0 when allowed


class Buckets(Protocol):
    def take(self, client: str, rate_per_s: float, burst: int) -> Decision: ...


def _refill(tokens: float, last: float, now: float, rate_per_s: float, burst: int) -> float:
    return min(float(burst), tokens + max(0.0, now - last) * rate_per_s)


class MemoryBuckets:
    """Buckets in this process (embedded mode). Old idle buckets are dropped as they fill up."""

    def __init__(self, clock=time.monotonic, max_clients: int = 100_000) -> None:
        self._clock = clock
        self._max_clients = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, client: str, rate_per_s: float, burst: int) -> Decision:
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(client, (float(burst), now))
            tokens = _refill(tokens, last, now, rate_per_s, burst)
            if tokens >= 1.0:
                self._buckets[client] = (tokens - 1.0, now)
                decision = Decision(True, 0.0)
            else:
                self._buckets[client] = (tokens, now)
                decision = Decision(False, (1.0 - tokens) / rate_per_s)
            if len(self._buckets) > self._max_clients:
                self._forget_full(now, rate_per_s, burst)
        return decision

    def _forget_full(self, now: float, rate_per_s: float, burst: int) -> None:
        full = [c for c, (t, last) in self._buckets.items()
                if _refill(t, last, now, rate_per_s, burst) >= burst]
        for client in full:
            del self._buckets[client]


# KEYS[1] bucket; ARGV rate/s, burst, now (s). Returns {allowed 0/1, retry-after ms}.
# Redis TIME would be better than the caller's clock, but scripts that read TIME cannot be
# replicated in older Redis; gateway clocks are NTP-synced and a few ms of skew is harmless.
_TOKEN_BUCKET_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'last')
local tokens = tonumber(state[1]) or burst
local last = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - last) * rate)
local allowed = 0
local retry_ms = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  retry_ms = math.ceil((1 - tokens) / rate * 1000)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'last', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, retry_ms}
"""


class RedisBuckets:
    """Buckets shared by every gateway process through Redis."""

    def __init__(self, redis_url: str, clock=time.time) -> None:
        import redis

        from workers.store import redis_client

        self._redis = redis_client(redis_url)
        self._script = self._redis.register_script(_TOKEN_BUCKET_LUA)
        self._clock = clock
        self._errors = (redis.RedisError, OSError)

    def take(self, client: str, rate_per_s: float, burst: int) -> Decision:
        try:
            allowed, retry_ms = self._script(keys=[REDIS_KEY_PREFIX + client],
                                             args=[rate_per_s, burst, self._clock()])
        except self._errors:
            return Decision(True, 0.0)  # fail open; see the module docstring
        return Decision(bool(allowed), int(retry_ms) / 1000.0)


def client_address(req: Request, trusted_proxy_hops: int) -> str:
    """The client's address; X-Forwarded-For only as far as we trust proxies in front of us.

    With N trusted hops, the N-th address from the right of X-Forwarded-For is the one our
    nearest trusted proxy saw; anything left of it is client-supplied and can be forged.
    """
    if trusted_proxy_hops > 0:
        forwarded = [a.strip() for a in req.headers.get("X-Forwarded-For", "").split(",") if a.strip()]
        if len(forwarded) >= trusted_proxy_hops:
            return forwarded[-trusted_proxy_hops]
    return req.remote_addr or "unknown"


class RateLimiter:
    def __init__(self, settings: Settings, buckets: Buckets | None = None) -> None:
        server = settings.server
        self.per_minute = server.rate_limit_per_minute
        self.burst = server.rate_limit_burst
        self.trusted_proxy_hops = server.trusted_proxy_hops
        if buckets is None:
            buckets = MemoryBuckets() if server.embedded else RedisBuckets(settings.redis_url)
        self.buckets = buckets

    @property
    def enabled(self) -> bool:
        return self.per_minute > 0

    def check(self):
        """A 429 response when this request is over its client's limit, else None."""
        if not self.enabled or request.endpoint not in LIMITED_ENDPOINTS:
            return None
        client = client_address(request, self.trusted_proxy_hops)
        decision = self.buckets.take(client, self.per_minute / 60.0, self.burst)
        if decision.allowed:
            return None
        retry_after = max(1, math.ceil(decision.retry_after_s))
        return error_response(
            429, "rate_limited",
            f"too many photos from your address: the limit is {self.per_minute} per minute "
            f"(bursts of {self.burst}); try again in {retry_after} s",
            {"Retry-After": str(retry_after)},
        )


def init_rate_limit(app: Flask, settings: Settings) -> RateLimiter:
    """Register the limiter; call once from the app factory."""
    limiter = RateLimiter(settings)
    app.extensions["lens_rate_limiter"] = limiter
    app.before_request(lambda: current_app.extensions["lens_rate_limiter"].check())
    return limiter

"""Structured logs and Prometheus metrics for the gateway and the workers.

- One JSON line per HTTP request (logger `lens.access`) and one per Celery task (`lens.task`),
  with the request id, the job id when there is one, and the stage timings of finished jobs.
- `/metrics` in the Prometheus text format: requests and their latency per endpoint, errors per
  code, stage latencies of finished jobs, tasks run, and the depth of each Celery queue (read from
  Redis at scrape time). Under gunicorn with several processes set PROMETHEUS_MULTIPROC_DIR to an
  empty directory so that every process's counts are summed.

Label values come from fixed sets (route rules, stage names, error codes), never from raw paths,
so that a scanner probing random URLs cannot blow up the number of series.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import threading
import time
import uuid
from typing import Any

from flask import Flask, Response, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily

from lens.config import Settings
from lens.logs import json_logger, log_json
from lens.stages import BRANCH_NAMES, STAGE_NAMES
from workers.observability import install_task_logging

REQUESTS = Counter("lens_http_requests_total", "HTTP requests answered",
                   ["method", "endpoint", "status"])
REQUEST_SECONDS = Histogram(
    "lens_http_request_duration_seconds", "Time to answer an HTTP request", ["endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
ERRORS = Counter("lens_http_errors_total", "HTTP answers with status >= 400, by error code",
                 ["endpoint", "status", "code"])
STAGE_SECONDS = Histogram(
    "lens_stage_duration_seconds", "Time spent in each pipeline stage of finished jobs", ["stage"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128))
JOBS_FINISHED = Counter("lens_jobs_finished_total", "Analysis jobs seen finished by the gateway",
                        ["status"])

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_STAGE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,40}$")  # error codes
# The stage label's fixed set: every stage, each branch's total and the job's (lens.stages).
STAGE_LABELS = frozenset((*STAGE_NAMES, *(f"{b}_total" for b in BRANCH_NAMES), "total"))
_JOB_SEEN_TTL_S = 24 * 3600


def stage_timings(body: Any) -> dict[str, float] | None:
    """timings_ms of a finished analysis in a JSON answer (a job or a cached/eager result)."""
    if not isinstance(body, dict):
        return None
    result = body.get("result")
    timings = result.get("timings_ms") if isinstance(result, dict) else None
    if not isinstance(timings, dict):
        return None
    return {k: float(v) for k, v in timings.items()
            if k in STAGE_LABELS and isinstance(v, int | float)}


# -- the gateway ---------------------------------------------------------------------------------

class RequestObserver:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.log = json_logger("lens.access")
        self._seen_jobs: dict[str, float] = {}  # embedded mode: jobs whose stages were counted
        self._lock = threading.Lock()

    def before(self) -> None:
        g.lens_started = time.perf_counter()
        supplied = request.headers.get("X-Request-ID", "")
        g.lens_request_id = supplied if _REQUEST_ID.match(supplied) else uuid.uuid4().hex

    def after(self, response: Response) -> Response:
        started = getattr(g, "lens_started", None)
        duration = time.perf_counter() - started if started is not None else 0.0
        endpoint = request.url_rule.rule if request.url_rule is not None else "unmatched"
        status = response.status_code
        body = self._json_body(response)
        job_id = (body or {}).get("job_id") if isinstance(body, dict) else None
        job_id = job_id or (request.view_args or {}).get("job_id")
        error_code = None
        if status >= 400:
            error = body.get("error") if isinstance(body, dict) else None
            error_code = error.get("code") if isinstance(error, dict) else None
            ERRORS.labels(endpoint, str(status), _bounded_code(error_code)).inc()
        REQUESTS.labels(request.method, endpoint, str(status)).inc()
        REQUEST_SECONDS.labels(endpoint).observe(duration)
        timings = stage_timings(body)
        cached = isinstance(body, dict) and body.get("cached")
        if timings is not None and not cached and self._first_sighting(job_id):
            JOBS_FINISHED.labels("done").inc()
            for stage, ms in timings.items():
                STAGE_SECONDS.labels(stage).observe(ms / 1000.0)
        elif isinstance(body, dict) and body.get("status") == "failed" and self._first_sighting(job_id):
            JOBS_FINISHED.labels("failed").inc()
        request_id = getattr(g, "lens_request_id", None)
        if request_id:
            response.headers.setdefault("X-Request-ID", request_id)
        log_json(
            self.log, event="request", request_id=request_id, method=request.method,
            path=request.path[:200], endpoint=endpoint, status=status,
            duration_ms=round(duration * 1000, 2), client=request.remote_addr, job_id=job_id,
            job_status=body.get("status") if job_id and isinstance(body, dict) else None,
            error_code=error_code, stage_ms=timings, bytes_in=request.content_length,
        )
        return response

    @staticmethod
    def _json_body(response: Response) -> Any:
        if response.direct_passthrough or response.mimetype != "application/json":
            return None
        try:
            return json.loads(response.get_data())
        except (ValueError, RuntimeError):
            return None

    def _first_sighting(self, job_id: str | None) -> bool:
        """True once per job: a client polling a finished job must not count its stages again."""
        if not job_id:
            return False
        gateway = current_app.extensions.get("lens_gateway")
        store = getattr(getattr(gateway, "runtime", None), "store", None)
        if store is not None and not self.settings.server.embedded:
            try:
                return bool(store.set_if_absent(f"metrics:seen:{job_id}", "1", _JOB_SEEN_TTL_S))
            except Exception:  # Redis down: count in this process only
                pass
        now = time.monotonic()
        with self._lock:
            if len(self._seen_jobs) > 10_000:
                cutoff = now - _JOB_SEEN_TTL_S
                self._seen_jobs = {k: t for k, t in self._seen_jobs.items() if t > cutoff}
            if job_id in self._seen_jobs:
                return False
            self._seen_jobs[job_id] = now
            return True


def _bounded_code(code: Any) -> str:
    return code if isinstance(code, str) and _STAGE_NAME.match(code) else "other"


class QueueDepthCollector:
    """lens_queue_depth{queue}: messages waiting in each Celery queue, read at scrape time."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def collect(self):
        from workers.app import QUEUES

        family = GaugeMetricFamily("lens_queue_depth", "Messages waiting in each Celery queue",
                                   labels=["queue"])
        up = GaugeMetricFamily("lens_queue_up", "1 when the queue (Redis) answered the scrape")
        if self.settings.server.embedded:
            for queue in QUEUES:
                family.add_metric([queue], 0)
            up.add_metric([], 1)
        else:
            import redis

            from workers.store import redis_client

            try:
                with redis_client(self.settings.redis_url).pipeline() as pipe:
                    for queue in QUEUES:
                        pipe.llen(queue)
                    depths = pipe.execute()
                for queue, depth in zip(QUEUES, depths, strict=True):
                    family.add_metric([queue], depth)
                up.add_metric([], 1)
            except (redis.RedisError, OSError):
                up.add_metric([], 0)
        yield family
        yield up


def metrics_registry(settings: Settings) -> CollectorRegistry:
    """What /metrics reports: this process (or all gunicorn processes) plus queue depths."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        from prometheus_client import REGISTRY

        registry = CollectorRegistry()
        registry.register(_Delegate(REGISTRY))
    registry.register(QueueDepthCollector(settings))
    return registry


class _Delegate:
    """Exposes another registry's metrics inside ours (the default one stays untouched)."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self):
        yield from self.source.collect()


def metrics_allowed(settings: Settings) -> bool:
    if settings.server.metrics_public:
        return True
    try:
        address = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        address = None
    if address is not None and (address.is_loopback or address.is_private):
        return True
    from web.security import bearer_key_matches

    return bearer_key_matches(settings, request.headers.get("Authorization"))


def init_observability(app: Flask, settings: Settings) -> None:
    """JSON request logs, /metrics; in embedded mode also the task logs. Call once per app."""
    observer = RequestObserver(settings)
    app.before_request(observer.before)
    app.after_request(observer.after)
    registry = metrics_registry(settings)

    @app.get("/metrics")
    def metrics():
        if not metrics_allowed(settings):
            from web.errors import error_response

            return error_response(403, "forbidden", (
                "metrics are served to local and private addresses, or with the API key; "
                "set server.metrics_public to open them"))
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)

    if settings.server.embedded:
        install_task_logging()

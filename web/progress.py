"""`GET /api/v1/jobs/<id>/events`: a job's stages as server-sent events, so that the page can
say where the analysis is (uploaded, detecting, searching, reading text, translating, done).

The stream reads the same job record that `GET /api/v1/jobs/<id>` answers, a few times a
second, and sends an event only when something changed:
  event: progress   data: {job_id, status, stage, stages, message}
  event: end        data: the whole job (with its result when done); the stream then closes
  event: job-error  data: {error: {code, message}} when the job can no longer be read
A stream closes after STREAM_MAX_S even if the job goes on; EventSource reconnects by itself
(`retry:`), so no server thread is held for the whole of a long wait. Clients without
EventSource poll `GET /api/v1/jobs/<id>` instead, which carries the same `stage`/`stages`.

Each open stream holds one server thread. Under gunicorn (gateway_workers x gateway_threads)
at most half of a process's threads stream at once; past that the answer is 503 `busy`, on
which EventSource gives up and the page polls instead, so streams never starve other requests.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Flask, Response, current_app

from lens.config import Settings
from lens.errors import LensError
from web.errors import ApiError
from web.gateway import Gateway

progress = Blueprint("progress", __name__)

# How often the job record is read while streaming: stages last hundreds of ms to seconds.
POLL_S = 0.25
# A comment line this often keeps proxies (and the server's socket timeout) from closing an
# idle stream while one stage takes long.
HEARTBEAT_S = 10.0
# One stream holds a server thread; past this it closes and the browser reconnects.
STREAM_MAX_S = 55.0
RECONNECT_MS = 1000
FINISHED = ("done", "failed")
# The embedded server (Werkzeug) starts a thread per connection; a household never gets near.
EMBEDDED_MAX_STREAMS = 64


def max_streams(settings: Settings) -> int:
    if settings.server.embedded:
        return EMBEDDED_MAX_STREAMS
    return max(1, settings.server.gateway_threads // 2)


def init_progress(app: Flask, settings: Settings) -> None:
    app.extensions["lens_streams"] = threading.BoundedSemaphore(max_streams(settings))
    app.register_blueprint(progress)


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _summary(job: dict[str, Any]) -> dict[str, Any]:
    return {k: job.get(k) for k in ("job_id", "status", "stage", "stages", "message")}


class _Stream:
    """The response body: the events, and the stream slot given back exactly once when the
    server closes the response (finished, client gone, or never read)."""

    def __init__(self, events: Iterator[str], slot: threading.BoundedSemaphore) -> None:
        self.events, self.slot, self.released = events, slot, False

    def __iter__(self) -> _Stream:
        return self

    def __next__(self) -> str:
        try:
            return next(self.events)
        except StopIteration:
            self._release()
            raise

    def _release(self) -> None:
        if not self.released:
            self.released = True
            self.slot.release()

    def close(self) -> None:
        self._release()
        close = getattr(self.events, "close", None)
        if close is not None:
            close()


def job_events(gateway: Gateway, job_id: str, first: dict[str, Any]) -> Iterator[str]:
    """The event stream of one job, starting from its already-read state `first`."""
    started = last_sent = time.monotonic()
    yield f"retry: {RECONNECT_MS}\n\n"
    job, previous = first, None
    while True:
        summary = _summary(job)
        if summary != previous:
            yield _event("progress", summary)
            previous, last_sent = summary, time.monotonic()
        if job["status"] in FINISHED:
            yield _event("end", job)
            return
        now = time.monotonic()
        if now - started > STREAM_MAX_S:
            return
        if now - last_sent > HEARTBEAT_S:
            yield ": still working\n\n"
            last_sent = now
        time.sleep(POLL_S)
        try:
            job = gateway.job(job_id)
        except LensError as exc:  # expired, or the store went away mid-stream
            yield _event("job-error", {"error": {"code": exc.code, "message": exc.message}})
            return


@progress.get("/api/v1/jobs/<job_id>/events")
def events(job_id: str):
    gateway: Gateway = current_app.extensions["lens_gateway"]
    first = gateway.job(job_id)  # an unknown job is a 404 JSON error, before any streaming
    slot: threading.BoundedSemaphore = current_app.extensions["lens_streams"]
    if not slot.acquire(blocking=False):
        raise ApiError(503, "busy", "too many progress streams open; poll GET /api/v1/jobs/<id> instead",
                       headers={"Retry-After": "5"})
    # No request context is needed while streaming: the gateway reads the store directly.
    response = Response(_Stream(job_events(gateway, job_id, first), slot), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: pass events through as they come
    return response

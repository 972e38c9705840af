"""What the API does, apart from HTTP: store uploads, enqueue canvases, read jobs, wait for
synchronous tasks. The gateway never loads a model; workers (or, embedded, eager tasks) do."""

from __future__ import annotations

import json
import time
from typing import Any

import kombu.exceptions
import redis
from celery import Celery
from celery.exceptions import TimeoutError as CeleryTimeout

from lens.config import Settings
from lens.image import DecodedImage, decode_image
from lens.pipeline import AnalyzeOptions, Pipeline
from lens.stages import enabled_stages
from web.catalog import catalog_state
from web.errors import ApiError
from workers.jobs import JobRecord
from workers.store import QueueUnavailableError, redacted
from workers.tasks import analyze_canvas
from workers.uploads import S3Uploads, UploadStoreUnavailableError

API = "/api/v1"


class Gateway:
    def __init__(self, settings: Settings, celery: Celery) -> None:
        self.settings = settings
        self.celery = celery
        self.runtime = celery.lens
        self.jobs = self.runtime.jobs
        # Only for model_versions() (configuration, no model is loaded by the gateway).
        self._versions = Pipeline(settings).model_versions()

    @property
    def embedded(self) -> bool:
        return self.settings.server.embedded

    # -- photos ------------------------------------------------------------------------------
    def decode(self, data: bytes | None) -> DecodedImage:
        if data is None:
            raise ApiError(400, "missing_image", "send the photo as an 'image' file or base64 field")
        limits = self.settings.limits
        return decode_image(data, max_bytes=limits.max_upload_bytes, max_pixels=limits.max_pixels,
                            max_side=limits.max_side, max_aspect_ratio=limits.max_aspect_ratio)

    def store_upload(self, data: bytes, image: DecodedImage) -> str:
        """Hand the photo to the upload store (disk, Redis or S3: workers/uploads.py); returns
        the reference that tasks are given."""
        reference = self.jobs.uploads.put(data, image.sha256, image.format)
        # Embedded, the tasks run in this process: they take this decoded copy, not the file.
        self.runtime.remember_decoded(reference, image)
        return reference

    # -- analyze -----------------------------------------------------------------------------
    def analyze(self, data: bytes, image: DecodedImage, options: AnalyzeOptions,
                wait: bool = True) -> tuple[int, dict[str, Any]]:
        """(200, finished job) when cached or run eagerly, else (202, queued job). Embedded with
        wait=False (the client sent `Prefer: respond-async`) the job runs on the compute thread
        and the answer is 202 at once, so that the client can follow its stages."""
        versions = {**self._versions, "catalog": catalog_state(self.settings)}
        in_background = self.embedded and not wait

        def enqueue(record: JobRecord) -> None:
            # Embedded, the tasks run in this process: they take this decoded copy, not the file.
            self.runtime.remember_decoded(record.upload_ref, image)
            if in_background:
                self.runtime.submit(lambda: self._run_eagerly(record.job_id, record.cache_key))
                return
            try:
                self.runtime.run_canvas(analyze_canvas(self.celery, record.job_id))
            except (kombu.exceptions.OperationalError, redis.ConnectionError, OSError) as exc:
                raise self.queue_down(exc) from None

        sent = self.jobs.submit(data, image, options.model_dump(), versions, enqueue)
        if sent.outcome == "cached":
            return 200, {**self._queued(sent.job_id), "status": "done", "message": None, "cached": True,
                         "result": json.loads(sent.result_json or "null")}
        if sent.outcome == "queued" and self.embedded and not in_background:
            return 200, self.job(sent.job_id)  # eager: the canvas already ran
        return 202, self._queued(sent.job_id)

    def _run_eagerly(self, job_id: str, key: str) -> None:
        """The canvas on the compute thread for a client that did not wait; a failure nobody
        else would see is written on the job."""
        try:
            self.runtime.run_canvas(analyze_canvas(self.celery, job_id))
        except Exception as exc:
            self.jobs.set_state(job_id, "failed", message=f"internal error: {type(exc).__name__}: {exc}")
            self.jobs.release_inflight(key)

    def _queued(self, job_id: str) -> dict[str, Any]:
        return {"job_id": job_id, "status": "queued", "status_url": f"{API}/jobs/{job_id}"}

    def job(self, job_id: str) -> dict[str, Any]:
        record = self.jobs.record(job_id)
        state = self.jobs.state(job_id)
        body: dict[str, Any] = {
            "job_id": job_id, "status": state.status, "message": state.message,
            "status_url": f"{API}/jobs/{job_id}", "image_id": record.image_id,
            "created": record.created,
        }
        body["stages"] = self.jobs.stages(job_id, record, state)
        body["stage"] = self.jobs.current_stage(job_id, body["stages"])
        age = time.time() - record.created
        deadline = self.settings.server.job_deadline_s
        if state.status in ("queued", "running") and age > deadline:
            body["status"] = "failed"
            body["message"] = (
                f"no result after {deadline} s: the workers are down or overloaded "
                f"(the job was {state.status}); try again later"
            )
        if state.status == "done":
            raw = self.jobs.result(state.result_key or record.cache_key)
            if raw is None:
                body["status"] = "failed"
                body["message"] = "the result has expired; analyse the photo again"
            else:
                body["result"] = json.loads(raw)
        return body

    # -- crop search -------------------------------------------------------------------------
    def search(self, upload_ref: str, box: tuple[float, ...], k: int | None,
               text: str | None = None) -> list[dict[str, Any]]:
        """Matches for a box of a photo; with `text`, the box's shortlist re-ranked by it."""
        out = self.call("lens.search", upload_ref, list(box), k, text)
        return out["matches"]

    def search_text(self, text: str, k: int | None) -> list[dict[str, Any]]:
        """Matches for words alone (the catalog's text index)."""
        if catalog_state(self.settings) == "none":
            raise ApiError(409, "no_catalog", (
                "there is no catalog to search yet; build one with `lens index add <folder>` "
                "(or `lens demo-catalog`), or add items with POST /api/v1/items"))
        return self.call("lens.search_text", text, k)["matches"]

    # -- synchronous tasks -------------------------------------------------------------------
    def call(self, task_name: str, *args: Any) -> dict[str, Any]:
        """Run a task (on a worker, or eagerly) and wait; errors it returned are raised here."""
        try:
            if self.embedded:
                # An eager result is already finished, so get() cannot block. Celery's guard
                # against get() inside a task reads one process-wide flag, which an eager task
                # running on another compute thread sets: without this, concurrent requests 500.
                out = self.runtime.run(
                    lambda: self.celery.tasks[task_name].apply_async(args=args).get(disable_sync_subtasks=False),
                    exclusive=task_name.startswith("lens.index."))
            else:
                result = self.celery.tasks[task_name].apply_async(args=args)
                out = result.get(timeout=self.settings.server.sync_timeout_s)
        except CeleryTimeout:
            raise ApiError(504, "timeout", (
                f"no worker answered within {self.settings.server.sync_timeout_s:.0f} s; "
                "are workers running for this queue?")) from None
        except (kombu.exceptions.OperationalError, redis.ConnectionError, OSError) as exc:
            if self.embedded and isinstance(exc, OSError):
                raise  # no queue here: the task itself failed (a disk error is a 507/500, not a 503)
            raise self.queue_down(exc) from None
        if isinstance(out, dict) and "error" in out:
            err = out["error"]
            raise ApiError(int(err.get("status", 400)), err.get("code", "error"), err.get("message", ""))
        return out

    def queue_down(self, exc: Exception) -> QueueUnavailableError:
        return QueueUnavailableError(
            f"the job queue (Redis at {redacted(self.settings.redis_url)}) is unreachable, so "
            f"the photo cannot be analysed now; try again shortly ({type(exc).__name__})"
        )

    # -- readiness ---------------------------------------------------------------------------
    def readiness(self) -> dict[str, dict[str, Any]]:
        checks: dict[str, dict[str, Any]] = {}
        if self.embedded:
            checks["redis"] = {"ok": True, "detail": "not used (embedded mode)"}
        else:
            try:
                self.runtime.store.ping()
                checks["redis"] = {"ok": True, "detail": redacted(self.settings.redis_url)}
            except QueueUnavailableError as exc:
                checks["redis"] = {"ok": False, "detail": exc.message}
        if isinstance(self.jobs.uploads, S3Uploads):
            try:
                checks["uploads"] = {"ok": True, "detail": self.jobs.uploads.check()}
            except UploadStoreUnavailableError as exc:
                checks["uploads"] = {"ok": False, "detail": exc.message}
        checks["models"] = self._models_check()
        checks["index"] = self._index_check()
        return checks

    def _models_check(self) -> dict[str, Any]:
        from lens.models import load_manifest

        s = self.settings
        manifest = load_manifest()
        enabled = set(enabled_stages(s)) & {spec.stage for spec in manifest}  # stages with model files
        missing = [f"{spec.name}: {spec.how_to_get(s)}" for spec in manifest
                   if spec.default and spec.stage in enabled and not spec.is_ready(s)]
        if missing:
            return {"ok": False, "detail": "missing models: " + "; ".join(missing)}
        return {"ok": True, "detail": f"default models present for {', '.join(sorted(enabled))}"}

    def _index_check(self) -> dict[str, Any]:
        from web.catalog import catalog_status

        return catalog_status(self.settings)


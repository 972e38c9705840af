"""Job records, uploads and the result cache: what the gateway and the tasks share.

A job is one analysis of one stored upload with one set of options. Its id travels through
the queue; the photo itself waits in the upload store under its content hash (on disk, or in
Redis with a TTL: workers/uploads.py), never in a message.
Keys in the store:
  job:<id>              the record (image, upload reference, options, cache key), written once
  job:<id>:state        status queued/running/done/failed, message, timestamps
  job:<id>:part:<name>  one branch's output (regions or text), for the merge
  job:<id>:tries:<name> how many times a branch started (redeliveries after a worker died)
  job:<id>:stages:<name> the stages one branch has entered, [[stage, unix time], ...]
  result:<cache key>    the merged AnalyzeResult JSON
  inflight:<cache key>  the job computing that result right now
  count:task:<name>     how many times each task body ran (tests, metrics)
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from lens.config import Settings
from lens.errors import LensError
from lens.image import DecodedImage
from lens.stages import BRANCH_NAMES, PROGRESS
from workers.store import Store
from workers.uploads import UploadStore, make_upload_store, save_upload

STATUSES = ("queued", "running", "done", "failed")
__all__ = ["JobRecord", "JobState", "Jobs", "Submission", "new_job_id", "result_cache_key", "save_upload"]


class JobNotFoundError(LensError):
    http_status = 404
    code = "job_not_found"


@dataclass
class JobRecord:
    job_id: str
    image_id: str
    # Where the photo waits: a path on disk, or redis:<name> (workers/uploads.py).
    upload_ref: str
    width: int
    height: int
    options: dict[str, Any]
    cache_key: str
    created: float = field(default_factory=time.time)


@dataclass
class JobState:
    status: str
    message: str | None = None
    updated: float = field(default_factory=time.time)
    worker: str | None = None
    # Where the result is stored when status is done (the cache key, or job-<id> if partial).
    result_key: str | None = None


@dataclass
class Submission:
    """What became of a photo handed to Jobs.submit."""

    job_id: str
    # "cached": answered from the result cache (result_json set); "following": the same photo
    # with the same options is being analysed by job_id now; "queued": a new job was enqueued.
    outcome: str
    result_json: str | None = None


def new_job_id() -> str:
    return uuid.uuid4().hex


def result_cache_key(image_id: str, model_versions: dict[str, str], options: dict[str, Any]) -> str:
    """Same photo bytes, same models, same options -> same key."""
    payload = json.dumps(
        {"image": image_id, "models": model_versions, "options": options}, sort_keys=True
    )
    return hashlib.sha256(payload.encode()).hexdigest()


class Jobs:
    """Job records and results in a Store, with the TTLs from settings.server."""

    def __init__(self, settings: Settings, store: Store, results: Store | None = None,
                 uploads: UploadStore | None = None) -> None:
        self.settings = settings
        self.store = store
        self.uploads = uploads or make_upload_store(settings)
        # Where finished results live; the embedded server also keeps them on disk.
        self.results = results or store
        self.ttl = settings.server.job_ttl_s

    # -- a photo's way in -----------------------------------------------------------------------
    def submit(self, data: bytes, image: DecodedImage, options: dict[str, Any], versions: dict[str, str],
               enqueue: Callable[[JobRecord], None]) -> Submission:
        """Store the upload and answer from the cache, follow the job already computing the same
        result, or write a new job and hand it to `enqueue` (which sends its canvas). If enqueue
        raises, the in-flight claim is released so that a retry is not told to follow a job that
        was never sent."""
        key = result_cache_key(image.sha256, versions, options)
        reference = self.uploads.put(data, image.sha256, image.format)
        record = JobRecord(job_id=new_job_id(), image_id=image.sha256, upload_ref=reference,
                           width=image.width, height=image.height, options=options, cache_key=key)
        cached = self.cached_result(key)
        if cached is not None:
            # A job record without work, so that a later crop search can name this photo.
            self.create(record, status="done", result_key=key)
            return Submission(record.job_id, "cached", cached)
        running = self.claim_inflight(key, record.job_id)
        if running != record.job_id:
            if self.is_live(running):
                return Submission(running, "following")
            self.release_inflight(key)  # a stale claim (its job failed or expired)
            self.claim_inflight(key, record.job_id)
        self.create(record)
        try:
            enqueue(record)
        except BaseException:
            self.release_inflight(key)
            raise
        return Submission(record.job_id, "queued")

    def is_live(self, job_id: str) -> bool:
        """The job exists, has not failed, and is done or still within its deadline."""
        try:
            record, state = self.record(job_id), self.state(job_id)
        except LensError:
            return False
        if state.status == "done":
            return True
        return state.status != "failed" and time.time() - record.created <= self.settings.server.job_deadline_s

    # -- records and states --------------------------------------------------------------------
    def create(self, record: JobRecord, status: str = "queued", result_key: str | None = None) -> None:
        self.store.set(f"job:{record.job_id}", json.dumps(asdict(record)), self.ttl)
        self.set_state(record.job_id, status, result_key=result_key)

    def record(self, job_id: str) -> JobRecord:
        raw = self.store.get(f"job:{job_id}") if _valid_id(job_id) else None
        if raw is None:
            raise JobNotFoundError(f"no job '{job_id}' (unknown, or older than {self.ttl} s)")
        fields = json.loads(raw)
        if "upload_path" in fields:  # a record written before uploads could wait in Redis
            fields["upload_ref"] = fields.pop("upload_path")
        return JobRecord(**fields)

    def set_state(
        self,
        job_id: str,
        status: str,
        message: str | None = None,
        worker: str | None = None,
        result_key: str | None = None,
    ) -> None:
        assert status in STATUSES, status
        state = JobState(status=status, message=message, worker=worker, result_key=result_key)
        self.store.set(f"job:{job_id}:state", json.dumps(asdict(state)), self.ttl)

    def state(self, job_id: str) -> JobState:
        raw = self.store.get(f"job:{job_id}:state")
        if raw is None:
            raise JobNotFoundError(f"no job '{job_id}'")
        return JobState(**json.loads(raw))

    # -- branch outputs ------------------------------------------------------------------------
    def save_part(self, job_id: str, name: str, payload: dict[str, Any]) -> None:
        self.store.set(f"job:{job_id}:part:{name}", json.dumps(payload), self.ttl)

    def part(self, job_id: str, name: str) -> dict[str, Any] | None:
        raw = self.store.get(f"job:{job_id}:part:{name}")
        return None if raw is None else json.loads(raw)

    def count_try(self, job_id: str, name: str) -> int:
        return self.store.incr(f"job:{job_id}:tries:{name}", self.ttl)

    # -- progress ------------------------------------------------------------------------------
    def record_stage(self, job_id: str, branch: str, stage: str) -> None:
        """Append a stage to one branch's list; only that branch's task writes it (no race)."""
        assert stage in PROGRESS, stage
        key = f"job:{job_id}:stages:{branch}"
        entries = json.loads(self.store.get(key) or "[]")
        if entries and entries[-1][0] == stage:
            return
        entries.append([stage, round(time.time(), 3)])
        self.store.set(key, json.dumps(entries), self.ttl)

    def stages(self, job_id: str, record: JobRecord, state: JobState,
               branches: tuple[str, ...] = BRANCH_NAMES) -> list[dict[str, Any]]:
        """Every stage the job went through, oldest first: uploaded, the branches' stages, done."""
        events = [("uploaded", record.created)]
        for branch in branches:
            events += [(stage, at) for stage, at in json.loads(self.store.get(f"job:{job_id}:stages:{branch}") or "[]")]
        events.sort(key=lambda e: e[1])
        if state.status == "done":
            events.append(("done", max(state.updated, events[-1][1])))
        return [{"stage": stage, "at": at} for stage, at in events]

    def current_stage(self, job_id: str, stages: list[dict[str, Any]],
                      branches: tuple[str, ...] = BRANCH_NAMES) -> str:
        """The one stage to show: the branches run side by side, so "the stage entered last"
        would flick to reading_text the moment both start. Show the first unfinished branch's
        (in `branches` order: the dots before the text), the later one's once it is done."""
        if stages and stages[-1]["stage"] == "done":
            return "done"
        for branch in branches:
            entries = json.loads(self.store.get(f"job:{job_id}:stages:{branch}") or "[]")
            if entries and self.part(job_id, branch) is None:
                return entries[-1][0]
        return stages[-1]["stage"] if stages else "uploaded"

    # -- results -------------------------------------------------------------------------------
    def save_result(self, cache_key: str, result_json: str) -> None:
        ttl = max(self.settings.server.result_cache_ttl_s, self.ttl)
        self.results.set(f"result:{cache_key}", result_json, ttl)

    def result(self, cache_key: str) -> str | None:
        return self.results.get(f"result:{cache_key}")

    def cached_result(self, cache_key: str) -> str | None:
        """The result for this key if the cache is on (result_cache_ttl_s > 0)."""
        if self.settings.server.result_cache_ttl_s <= 0:
            return None
        return self.result(cache_key)

    def claim_inflight(self, cache_key: str, job_id: str) -> str:
        """Register job_id as computing cache_key; returns the job already doing it, if any."""
        key = f"inflight:{cache_key}"
        if self.store.set_if_absent(key, job_id, self.settings.server.task_hard_time_limit_s * 2):
            return job_id
        other = self.store.get(key)
        return other or job_id

    def release_inflight(self, cache_key: str) -> None:
        self.store.delete(f"inflight:{cache_key}")

    # -- counters ------------------------------------------------------------------------------
    def count_task(self, name: str) -> None:
        self.store.incr(f"count:task:{name}")

    def task_count(self, name: str) -> int:
        return int(self.store.get(f"count:task:{name}") or 0)


def _valid_id(job_id: str) -> bool:
    return len(job_id) == 32 and all(c in "0123456789abcdef" for c in job_id)

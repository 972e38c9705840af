"""Thin Celery tasks over lens.pipeline. Tasks take job ids and upload references (a path, or a
key in Redis: workers/uploads.py), never image bytes.

One photo is one canvas: group(regions(job), text(job)) joined by merge(job). The branches run
on different queues (so on different workers when there are several) and write their output
under the job's keys; the branch that finishes second sends merge, which builds the
AnalyzeResult and caches it. Every task is idempotent for its job id: a redelivered branch
whose output exists returns at once, merge is sent once (SET NX) and a merge of a job already
done does nothing.

Why not a chord: a chord stores every branch result in the result backend and makes the
sender (the gateway) subscribe to the body's result over Redis pub/sub for every photo; the
gateway never waits on it, and a Redis blip then surfaces as errors in garbage-collected
result objects. The branches here store nothing in the result backend (ignore_result), and
the join is one SET NX in the store.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery import Celery, Task, group
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

from lens.errors import LensError
from lens.pipeline import Timer
from lens.stages import BRANCH_NAMES, PROGRESS_OF_STAGE, is_enabled
from workers.uploads import load_upload_image

log = logging.getLogger(__name__)


def analyze_canvas(app: Celery, job_id: str):
    """The canvas for one photo; task ids derive from the job id (easy to trace)."""
    return group(
        app.signature(f"lens.{name}", args=(job_id,)).set(task_id=f"{job_id}-{name}")
        for name in BRANCH_NAMES
    )


def join_branches(app: Celery, job_id: str) -> None:
    """Send merge once both branch outputs exist (called by each branch as it finishes)."""
    jobs = app.lens.jobs
    if all(jobs.part(job_id, name) is not None for name in BRANCH_NAMES) and jobs.store.set_if_absent(
        f"job:{job_id}:merge-sent", "1", jobs.ttl
    ):
        app.signature("lens.merge", args=(job_id,)).set(task_id=f"{job_id}-merge").apply_async()


class ProgressTimer(Timer):
    """A Timer that also records on the job each stage the branch enters, so that the viewer
    sees where the analysis is (GET /api/v1/jobs/<id> and its /events stream)."""

    def __init__(self, jobs, job_id: str, branch: str) -> None:
        super().__init__()
        self.jobs, self.job_id, self.branch = jobs, job_id, branch

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        shown = PROGRESS_OF_STAGE.get(name)
        if shown is not None:
            try:
                self.jobs.record_stage(self.job_id, self.branch, shown)
            except LensError:  # progress is a courtesy; the analysis goes on without it
                log.warning("job %s: could not record stage %s", self.job_id, shown)
        with super().stage(name):
            yield


def _load_upload(runtime, reference: str):
    cached = runtime.decoded(reference)  # embedded: decoded once by the gateway
    if cached is not None:
        return cached
    return load_upload_image(runtime.settings, reference)


def run_branch(runtime, job_id: str, branch: str) -> str:
    """Run one branch of a job and store its output (or its error) under the job."""
    from lens.pipeline import AnalyzeOptions

    jobs = runtime.jobs
    if jobs.part(job_id, branch) is not None:
        return branch  # already done: this is a redelivery
    jobs.count_task(branch)
    tries = jobs.count_try(job_id, branch)
    max_attempts = runtime.settings.server.max_attempts
    if tries > max_attempts:
        jobs.save_part(job_id, branch, {"error": (
            f"stopped after {max_attempts} attempts: the worker process running it died each "
            "time (killed, or out of memory)")})
        return branch
    record = jobs.record(job_id)
    if jobs.state(job_id).status == "queued":
        jobs.set_state(job_id, "running", worker=runtime.worker_name())
    options = AnalyzeOptions(**record.options)
    timer = ProgressTimer(jobs, job_id, branch)
    payload: dict[str, Any]
    try:
        pipeline = runtime.pipeline()
        image = _load_upload(runtime, record.upload_ref)
        with timer.stage(f"{branch}_total"):
            if branch == "regions":
                regions = pipeline.find_regions(image, options, timer) if options.regions else []
                payload = {"regions": [r.model_dump(mode="json") for r in regions]}
            else:
                wanted = options.text and is_enabled(runtime.settings, "ocr")
                blocks = pipeline.read_text(image, options, timer) if wanted else []
                payload = {"text_blocks": [b.model_dump(mode="json") for b in blocks]}
        payload["timings_ms"] = timer.ms
    except SoftTimeLimitExceeded:
        limit = runtime.settings.server.task_soft_time_limit_s
        payload = {"error": f"took longer than the {limit} s limit"}
    except LensError as exc:
        payload = {"error": exc.message, "code": exc.code}
    except Exception as exc:  # a bug or a broken model: report it on the job, keep the worker
        log.exception("job %s: %s branch failed", job_id, branch)
        payload = {"error": f"internal error: {type(exc).__name__}: {exc}"}
    payload["worker"] = runtime.worker_name()
    jobs.save_part(job_id, branch, payload)
    return branch


def merge_job(runtime, job_id: str) -> str:
    """Combine the branch outputs into one AnalyzeResult; cache it if every branch worked."""
    jobs = runtime.jobs
    state = jobs.state(job_id)
    if state.status in ("done", "failed"):
        return state.status
    jobs.count_task("merge")
    record = jobs.record(job_id)
    parts = {name: jobs.part(job_id, name) or {"error": "its output is missing"} for name in BRANCH_NAMES}
    errors = [f"{name}: {part['error']}" for name, part in parts.items() if "error" in part]
    if len(errors) == len(BRANCH_NAMES):
        jobs.set_state(job_id, "failed", message="; ".join(errors), worker=state.worker)
        jobs.release_inflight(record.cache_key)
        return "failed"
    timings: dict[str, float] = {}
    for part in parts.values():
        timings.update(part.get("timings_ms", {}))
    timings["total"] = round((time.time() - record.created) * 1e3, 2)
    result = runtime.pipeline().assemble_result(
        record.image_id, record.width, record.height, parts["regions"].get("regions", []),
        parts["text"].get("text_blocks", []), timings, record.options, warnings=errors)
    # A partial result (one branch failed) is shown for this job but never cached.
    result_key = record.cache_key if not errors else f"job-{job_id}"
    jobs.save_result(result_key, result.to_json())
    jobs.set_state(job_id, "done", result_key=result_key, worker=state.worker)
    jobs.release_inflight(record.cache_key)
    return "done"


def search_crop(runtime, upload_ref: str, box: list[float], k: int | None,
                text: str | None = None) -> dict[str, Any]:
    """Catalog matches for one box of a stored upload, refined by `text` when given
    (multisearch); errors come back as data."""
    try:
        image = _load_upload(runtime, upload_ref)
        if text:
            matches = runtime.pipeline().multisearch(image, tuple(box), text, k=k)
        else:
            matches = runtime.pipeline().search_boxes(image, [tuple(box)], k=k)[0]
    except LensError as exc:
        return {"error": {"code": exc.code, "message": exc.message, "status": exc.http_status}}
    return {"matches": [m.model_dump(mode="json") for m in matches]}


def search_words(runtime, text: str, k: int | None) -> dict[str, Any]:
    """Catalog matches for words alone; errors come back as data."""
    try:
        matches = runtime.pipeline().search_text(text, k=k)
    except LensError as exc:
        return {"error": {"code": exc.code, "message": exc.message, "status": exc.http_status}}
    return {"matches": [m.model_dump(mode="json") for m in matches]}


class BranchTask(Task):
    """A branch whose process was killed at the hard time limit cannot report it itself; Celery
    calls on_failure in the worker's main process, which records the error for the job and
    joins, so the job fails now rather than at the job deadline."""

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        if not isinstance(exc, TimeLimitExceeded) or not args:
            return  # a lost worker's message is redelivered (reject_on_worker_lost)
        job_id, branch = args[0], self.name.rsplit(".", 1)[1]
        jobs = self.app.lens.jobs
        if jobs.part(job_id, branch) is None:
            jobs.save_part(job_id, branch, {"error": (
                f"took longer than the hard limit of {self.app.conf.task_time_limit} s; "
                "its process was stopped")})
        join_branches(self.app, job_id)


def register_tasks(app: Celery) -> None:
    runtime = app.lens

    def branch_task(branch: str) -> None:
        def run(job_id: str) -> str:
            run_branch(runtime, job_id, branch)
            join_branches(app, job_id)
            return branch

        run.__name__ = run.__qualname__ = branch
        app.task(name=f"lens.{branch}", ignore_result=True, shared=False, base=BranchTask)(run)

    for branch in BRANCH_NAMES:
        branch_task(branch)

    @app.task(name="lens.merge", ignore_result=True, shared=False)
    def merge(job_id: str) -> str:
        return merge_job(runtime, job_id)

    @app.task(name="lens.search", shared=False)
    def search(upload_ref: str, box: list[float], k: int | None = None, text: str | None = None) -> dict[str, Any]:
        runtime.jobs.count_task("search")
        return search_crop(runtime, upload_ref, box, k, text)

    @app.task(name="lens.search_text", shared=False)
    def search_text(text: str, k: int | None = None) -> dict[str, Any]:
        runtime.jobs.count_task("search_text")
        return search_words(runtime, text, k)

    from workers.index_tasks import register_index_tasks

    register_index_tasks(app)

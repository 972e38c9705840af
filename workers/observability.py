"""One JSON log line and Prometheus metrics per Celery task, in whatever process runs tasks
(a fleet worker, or the embedded server where tasks run eagerly)."""

from __future__ import annotations

import os
import time
from typing import Any

from prometheus_client import Counter, Histogram

from lens.logs import json_logger, log_json

TASKS = Counter("lens_tasks_total", "Celery tasks run, by outcome", ["task", "outcome"])
TASK_SECONDS = Histogram("lens_task_duration_seconds", "Celery task run time", ["task"],
                         buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 4, 8, 16, 32, 64, 128))

_task_started: dict[str, float] = {}
_installed = False


def install_task_logging() -> None:
    """One JSON line and metrics per Celery task, in whatever process runs tasks (idempotent)."""
    global _installed
    if _installed:
        return
    from celery.signals import task_failure, task_postrun, task_prerun

    logger = json_logger("lens.task")

    def on_prerun(task_id=None, task=None, **_):
        if task_id:
            _task_started[task_id] = time.perf_counter()

    def on_postrun(task_id=None, task=None, args=None, kwargs=None, retval=None, state=None, **_):
        started = _task_started.pop(task_id, None)
        duration = time.perf_counter() - started if started is not None else None
        name = getattr(task, "name", "unknown")
        job_id = (kwargs or {}).get("job_id") or _job_arg(name, args)
        part = _branch_output(task, name, job_id)
        outcome = "error" if state != "SUCCESS" or (part and "error" in part) else "ok"
        TASKS.labels(name, outcome).inc()
        if duration is not None:
            TASK_SECONDS.labels(name).observe(duration)
        log_json(
            logger, event="task", task=name, task_id=task_id, job_id=job_id, state=state,
            outcome=outcome, duration_ms=round(duration * 1000, 2) if duration else None,
            stage_ms=(part or {}).get("timings_ms"), error=(part or {}).get("error"),
            worker=f"{os.uname().nodename}:{os.getpid()}",
        )

    def on_failure(task_id=None, exception=None, sender=None, **_):
        log_json(logger, event="task_failure", task=getattr(sender, "name", None),
                 task_id=task_id, error=f"{type(exception).__name__}: {exception}")

    task_prerun.connect(on_prerun, weak=False)
    task_postrun.connect(on_postrun, weak=False)
    task_failure.connect(on_failure, weak=False)
    _installed = True


def _job_arg(name: str, args: Any) -> str | None:
    if name in ("lens.regions", "lens.text") and args:
        return str(args[0])
    return None


def _branch_output(task: Any, name: str, job_id: str | None) -> dict[str, Any] | None:
    """The stored output of a regions/text branch (its timings or error), for the log line."""
    if not job_id or name not in ("lens.regions", "lens.text"):
        return None
    runtime = getattr(getattr(task, "app", None), "lens", None)
    try:
        part = runtime.jobs.part(job_id, name.removeprefix("lens.")) if runtime else None
    except Exception:  # the store is down: log the line without the timings
        return None
    return part if isinstance(part, dict) else None

"""Worker recycling (issue 13): a real `celery worker` (prefork, one child) on a private
redis-server replaces its pool child once that child's peak RSS passes
server.worker_max_memory_mb, and keeps it when the limit is off. The task is a real catalog read
(`lens.item`, answered as data: this data dir has no catalog).
"""

from __future__ import annotations

import socket
import time

import pytest

from workers.local import RedisServer, WorkerProcess

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_recycling_is_configured_from_settings(settings):
    from workers.app import make_celery

    conf = make_celery(settings.model_copy(update={"server": settings.server.model_copy(
        update={"worker_max_memory_mb": 1500, "worker_max_tasks_per_child": 100})})).conf
    assert conf.worker_max_memory_per_child == 1500 * 1024  # Celery counts KiB
    assert conf.worker_max_tasks_per_child == 100
    off = make_celery(settings.model_copy(update={"server": settings.server.model_copy(
        update={"worker_max_memory_mb": 0})})).conf
    assert off.worker_max_memory_per_child is None


def run_tasks(lens_env, limit_mb: int, tasks: int) -> list[list[int]]:
    """The worker's pool child pids before and after each of `tasks` reads."""
    from lens.config import load_settings
    from workers.app import make_celery

    redis_server = RedisServer(free_port(), lens_env / "redis").start()
    env = {"LENS_REDIS_URL": redis_server.url, "LENS_DATA_DIR": str(lens_env / "data"),
           "LENS_SERVER__WORKER_MAX_MEMORY_MB": str(limit_mb)}
    worker = WorkerProcess(f"recycle{limit_mb}", env, ("vision",), log_dir=lens_env / "logs").start()
    try:
        worker.wait_ready()
        app = make_celery(load_settings(redis_url=redis_server.url, data_dir=lens_env / "data"))
        seen = [sorted(worker.child_pids())]
        for _ in range(tasks):
            out = app.tasks["lens.item"].apply_async(args=[1]).get(timeout=60)
            assert out["error"]["code"] == "catalog_unavailable", out
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:  # a replaced child is forked after the task
                pids = sorted(worker.child_pids())
                if len(pids) == 1 and (pids != seen[-1] or limit_mb == 0):
                    break
                time.sleep(0.2)
            seen.append(sorted(worker.child_pids()))
        return seen
    finally:
        worker.stop()
        redis_server.stop()


def test_a_child_over_its_memory_limit_is_replaced_after_its_task(lens_env):
    # 1 MB: every child is over it once it has run a task.
    seen = run_tasks(lens_env, limit_mb=1, tasks=2)
    assert all(len(pids) == 1 for pids in seen), seen
    assert len({pids[0] for pids in seen}) == 3, f"the child was not replaced after each task: {seen}"


def test_without_a_limit_the_child_stays(lens_env):
    seen = run_tasks(lens_env, limit_mb=0, tasks=2)
    assert len({tuple(pids) for pids in seen}) == 1, seen

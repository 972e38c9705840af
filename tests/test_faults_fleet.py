"""Faults with real processes: a private Redis (with an append-only file, as in production),
two real Celery workers, the gateway. A worker SIGKILLed mid-job, and Redis restarted mid-job,
each end with the job done (or failed with a message), the catalog giving the same search
results as before, and the service answering.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis
from test_security_gateway import forget_shared_lens_tasks

from lens.config import REPO_ROOT

pytestmark = pytest.mark.slow
API_KEY = "faults-key"
STAMPS = Path("/usr/share/tuxpaint/stamps")
JOB_DEADLINE_S = 240


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PersistentRedis:
    """redis-server on its own port with appendfsync always: a restart keeps queued jobs."""

    def __init__(self, port: int, work_dir: Path) -> None:
        self.port, self.work_dir, self.proc = port, work_dir, None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PersistentRedis:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.work_dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        for _ in range(200):
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server on {self.port} did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    from workers.local import WorkerProcess

    if not STAMPS.is_dir():
        pytest.skip(f"no tux stamps under {STAMPS} (Debian tuxpaint-stamps-default)")
    root = tmp_path_factory.mktemp("faults")
    server = PersistentRedis(free_port(), root / "redis").start()
    env = {
        "LENS_REDIS_URL": server.url, "LENS_DATA_DIR": str(root / "data"),
        "LENS_MODELS_DIR": str(REPO_ROOT / "var" / "models"), "LENS_API_KEY": API_KEY,
        "LENS_SERVER__RATE_LIMIT_PER_MINUTE": "0", "OMP_NUM_THREADS": "1",
        # A task whose worker lost Redis mid-run is redelivered after the visibility timeout
        # (production: 300 s); shorter here so the test ends in minutes. It must exceed the
        # hard time limit, or a slow task would run twice.
        "LENS_SERVER__TASK_SOFT_TIME_LIMIT_S": "50", "LENS_SERVER__TASK_HARD_TIME_LIMIT_S": "60",
        "LENS_SERVER__VISIBILITY_TIMEOUT_S": "75",
        # A job with no result by then is reported failed with a message (production: 600 s).
        "LENS_SERVER__JOB_DEADLINE_S": "120",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    workers = [
        WorkerProcess("faults-a", env, queues=("vision", "text", "index"), log_dir=root).start(),
        WorkerProcess("faults-b", env, queues=("vision", "text"), log_dir=root).start(),
    ]
    try:
        for worker in workers:
            worker.wait_ready(90)
        from lens.config import load_settings
        from web.app import create_app

        forget_shared_lens_tasks()
        app = create_app(load_settings())
        app.extensions["lens_gateway"].celery.finalize()
        forget_shared_lens_tasks()
        client = app.test_client()
        photos = sorted(STAMPS.rglob("*.png"))[:6]
        for photo in photos[:5]:
            response = client.post("/api/v1/items", headers={"Authorization": f"Bearer {API_KEY}"},
                                   data={"image": (photo.open("rb"), photo.name), "title": photo.stem})
            assert response.status_code in (200, 201), response.get_json()
        yield {"client": client, "redis": server, "workers": workers, "query": photos[0],
               "root": root}
    finally:
        for worker in workers:
            worker.stop()
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def search_results(client, photo: Path) -> list[tuple[int, float]]:
    response = client.post("/api/v1/search", data={"image": (photo.open("rb"), photo.name)})
    assert response.status_code == 200, response.get_json()
    return [(m["item_id"], round(m["score"], 4)) for m in response.get_json()["matches"]]


def submit(client, photo: Path) -> str:
    response = client.post("/api/v1/analyze", data={"image": (photo.open("rb"), photo.name)})
    assert response.status_code == 202, response.get_json()
    return response.get_json()["job_id"]


def wait_for(client, job_id: str, statuses: tuple[str, ...], deadline_s: float) -> dict:
    deadline = time.monotonic() + deadline_s
    body: dict = {}
    while time.monotonic() < deadline:
        response = client.get(f"/api/v1/jobs/{job_id}")
        if response.status_code == 200:
            body = response.get_json()
            if body["status"] in statuses:
                return body
        else:
            assert response.status_code == 503, response.get_json()  # Redis briefly away
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} not {statuses} after {deadline_s} s: {body}")


def assert_finished_cleanly(body: dict) -> None:
    assert body["status"] in ("done", "failed")
    if body["status"] == "failed":
        assert body["message"] and "Traceback" not in body["message"]
    else:
        assert body["result"]["width"] > 0


def test_worker_sigkilled_mid_job(fleet, bus_jpg):
    client, workers = fleet["client"], fleet["workers"]
    before = search_results(client, fleet["query"])
    job_id = submit(client, bus_jpg)
    wait_for(client, job_id, ("running", "done", "failed"), 120)
    # Kill the pool process of whichever worker took a branch of this job (SIGKILL: no cleanup).
    deadline = time.monotonic() + 60
    victims: list[int] = []
    while not victims and time.monotonic() < deadline:
        for worker in workers:
            if job_id in worker.log_tail(200_000):
                victims = worker.child_pids()
                break
        time.sleep(0.1)
    assert victims, "no worker logged the job"
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    body = wait_for(client, job_id, ("done", "failed"), JOB_DEADLINE_S)
    assert_finished_cleanly(body)
    assert client.get("/healthz").status_code == 200
    assert search_results(client, fleet["query"]) == before
    # The service keeps analysing: a fresh photo completes.
    again = wait_for(client, submit(client, sorted(STAMPS.rglob("*.png"))[7]), ("done", "failed"),
                     JOB_DEADLINE_S)
    assert again["status"] == "done", again


def test_redis_restarted_mid_job(fleet, zidane_jpg):
    client, server = fleet["client"], fleet["redis"]
    before = search_results(client, fleet["query"])
    job_id = submit(client, zidane_jpg)
    time.sleep(0.5)
    server.stop()
    # While Redis is down the gateway answers in words (503), never a 500.
    down = client.get(f"/api/v1/jobs/{job_id}")
    assert down.status_code == 503 and down.get_json()["error"]["message"]
    assert client.get("/healthz").status_code == 200
    time.sleep(2)
    server.start()
    body = wait_for(client, job_id, ("done", "failed"), JOB_DEADLINE_S)
    assert_finished_cleanly(body)
    assert client.get("/readyz").status_code == 200
    assert search_results(client, fleet["query"]) == before
    # Service resumed: a photo sent after the restart is analysed.
    again = wait_for(client, submit(client, sorted(STAMPS.rglob("*.png"))[8]), ("done", "failed"),
                     JOB_DEADLINE_S)
    assert again["status"] == "done", again

"""The fleet for real: the machine's Redis (DB 15, flushed), real `celery worker` processes with
real models, the gateway app in this process. Concurrent clients, a worker SIGKILLed in the
middle of a job, and a Redis outage (a private redis-server, never the machine's one)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis

from lens.config import REPO_ROOT, ServerConfig, load_settings
from workers.local import RedisServer, WorkerProcess

pytestmark = pytest.mark.slow

REDIS_DB_URL = "redis://127.0.0.1:6379/15"
API_KEY = "fleet-test-key"
# Short enough that a message held by a vanished worker comes back within a test, longer than
# any task here; the hard limit stays below it as in production.
SERVER = {
    "task_soft_time_limit_s": 45, "task_hard_time_limit_s": 55, "visibility_timeout_s": 60,
    **({"rate_limit_per_minute": 0} if "rate_limit_per_minute" in ServerConfig.model_fields else {}),
}
STAMPS = Path("/usr/share/tuxpaint/stamps")


def machine_redis_or_skip(url: str = REDIS_DB_URL) -> redis.Redis:
    """A client of this machine's Redis at `url`; the test is skipped where none answers."""
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.skip("no Redis at 127.0.0.1:6379 (make test starts one with scripts/ensure-redis.sh)")
    return client


def worker_env(data_dir: Path, redis_url: str, server: dict) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LENS_")}
    env.update({"LENS_REDIS_URL": redis_url, "LENS_DATA_DIR": str(data_dir),
                "LENS_MODELS_DIR": str(REPO_ROOT / "var" / "models"),
                # Plumbing, not calibration: every dot keeps its matches and the detector's label.
                "LENS_INDEX__MATCH_FLOOR": "-1", "LENS_INDEX__LABEL_FLOOR": "10"})
    env.update({f"LENS_SERVER__{k.upper()}": str(v) for k, v in server.items()})
    return env


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fleet-data")


LOCK_KEY = "lens-test:integration-lock"


def flush_all_but_lock(client: redis.Redis) -> None:
    for key in client.scan_iter(count=1000):
        if key != LOCK_KEY.encode():
            client.delete(key)


@pytest.fixture(scope="module")
def exclusive_db():
    """DB 15 for this module alone: another engineer's test run on the same machine would
    otherwise flush our jobs and its workers would take our tasks (they share the queues)."""
    client = machine_redis_or_skip()
    token = f"{socket.gethostname()}:{os.getpid()}:{time.time()}"
    deadline = time.monotonic() + 900
    while not client.set(LOCK_KEY, token, nx=True, ex=900):
        if time.monotonic() > deadline:
            pytest.skip("another run of the integration tests held Redis DB 15 for 15 minutes")
        time.sleep(1)
    flush_all_but_lock(client)
    try:
        yield client
    finally:
        flush_all_but_lock(client)
        if client.get(LOCK_KEY) == token.encode():
            client.delete(LOCK_KEY)


@pytest.fixture(scope="module")
def fleet(exclusive_db, data_dir, tmp_path_factory):
    logs = tmp_path_factory.mktemp("worker-logs")
    env = worker_env(data_dir, REDIS_DB_URL, SERVER)
    workers = {
        # One process owns catalog writes (the index queue); both serve photos.
        "w1": WorkerProcess("w1", env, ("vision", "text", "index"), log_dir=logs).start(),
        "w2": WorkerProcess("w2", env, ("vision", "text"), log_dir=logs).start(),
    }
    try:
        for worker in workers.values():
            worker.wait_ready(120)
        yield workers
    finally:
        for worker in workers.values():
            worker.stop()


@pytest.fixture(scope="module")
def gateway(fleet, data_dir):
    from web.app import create_app

    settings = load_settings(redis_url=REDIS_DB_URL, data_dir=data_dir, api_key=API_KEY,
                             models_dir=REPO_ROOT / "var" / "models", server=SERVER)
    return create_app(settings).test_client()


def submit(client, path: Path, **options):
    payload = {"image": base64.b64encode(path.read_bytes()).decode(), **options}
    response = client.post("/api/v1/analyze", json=payload)
    assert response.status_code in (200, 202), response.get_json()
    return response.get_json()


def wait_job(client, body: dict, timeout: float = 240.0, until=("done", "failed")) -> dict:
    if body.get("status") in until:
        return body
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get(body["status_url"])
        job = response.get_json()
        assert response.status_code == 200, (response.status_code, job)
        if job["status"] in until:
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {body['job_id']} still not {until} after {timeout} s: {job}")


def osie(n: int) -> list[Path]:
    photos = sorted((REPO_ROOT.parent / "shared" / "data" / "osie" / "stimuli").glob("*.jpg"))
    if len(photos) < n:
        pytest.skip("OSIE photos not found")
    return photos[:n]


def test_catalog_writes_go_through_the_index_queue(gateway, fleet):
    stamps = sorted(STAMPS.rglob("*.png"))[:40:10]
    if not stamps:
        pytest.skip("tux stamps not installed")
    auth = {"Authorization": f"Bearer {API_KEY}"}
    for path in stamps:
        response = gateway.post("/api/v1/items", headers=auth, json={
            "image": base64.b64encode(path.read_bytes()).decode(), "title": path.stem})
        assert response.status_code == 201, response.get_json()
    assert "Task lens.index.add[" in fleet["w1"].log_tail(200_000)
    assert "Task lens.index.add[" not in fleet["w2"].log_tail(200_000)
    ready = gateway.get("/readyz")
    assert ready.status_code == 200, ready.get_json()


def test_concurrent_clients_get_their_own_correct_results(gateway, bus_jpg, zidane_jpg):
    photos = [bus_jpg, zidane_jpg, *osie(2)]

    def one_client(path: Path) -> tuple[Path, dict]:
        return path, wait_job(gateway, submit(gateway, path))

    with ThreadPoolExecutor(len(photos)) as pool:
        results = list(pool.map(one_client, photos))
    for path, job in results:
        assert job["status"] == "done", job
        result = job["result"]
        assert result["image_id"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert not result["warnings"], result["warnings"]
    labels = {path.name: {r["label"] for r in job["result"]["regions"]} for path, job in results}
    assert "bus" in labels["bus.jpg"] and "person" in labels["zidane.jpg"], labels
    # Matches come from the catalog the index worker built, seen by both workers.
    assert any(r["matches"] for _, job in results for r in job["result"]["regions"])
    # Both worker processes served: four photos' branches spread over the two.
    store = redis.Redis.from_url(REDIS_DB_URL, decode_responses=True)
    served_by = {json.loads(store.get(f"lens:job:{job['job_id']}:part:{branch}"))["worker"]
                 for _, job in results for branch in ("regions", "text")}
    assert len(served_by) >= 2, served_by


def test_same_photo_twice_runs_no_task_the_second_time(gateway, bus_jpg):
    store = redis.Redis.from_url(REDIS_DB_URL, decode_responses=True)

    def counts():
        return {k: store.get(f"lens:count:task:{k}") for k in ("regions", "text", "merge")}

    first = wait_job(gateway, submit(gateway, bus_jpg, max_regions=3))
    before = counts()
    second = submit(gateway, bus_jpg, max_regions=3)
    assert second["status"] == "done" and second["cached"] is True
    assert second["result"] == first["result"]
    assert counts() == before


def catch_running(gateway, photos: list[Path]) -> tuple[dict, int]:
    """Submit photos until one is seen running (warm models are fast); its job and the pid of
    the pool process that started it."""
    store = redis.Redis.from_url(REDIS_DB_URL, decode_responses=True)
    for photo in photos:
        body = submit(gateway, photo)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            state = json.loads(store.get(f"lens:job:{body['job_id']}:state"))
            if state["status"] == "running":
                return body, int(state["worker"].rsplit(":", 1)[1])
            if state["status"] in ("done", "failed"):
                break
            time.sleep(0.01)
    pytest.fail("no job was seen running: every photo finished between two polls")


@pytest.mark.parametrize("victim", ["pool child", "whole worker"])
def test_worker_sigkilled_mid_job_the_job_still_completes(gateway, fleet, victim):
    photos = osie(16)[6:11] if victim == "pool child" else osie(16)[11:16]
    body, pid = catch_running(gateway, photos)
    owner = next(w for w in fleet.values() if pid in w.child_pids())
    if victim == "pool child":
        os.kill(pid, signal.SIGKILL)
    else:
        os.killpg(owner.proc.pid, signal.SIGKILL)
        owner.proc.wait(10)
    job = wait_job(gateway, body, timeout=240)
    assert job["status"] == "done", job
    assert not job["result"]["warnings"], job["result"]["warnings"]
    if victim == "whole worker":  # bring it back for the tests that follow
        fleet[owner.name] = WorkerProcess(owner.name, owner._env, owner.queues.split(","),
                                          log_dir=owner.log_path.parent).start()
        fleet[owner.name].wait_ready(120)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_redis_down_readyz_and_analyze_say_503_and_service_resumes(data_dir, tmp_path, fleet, zidane_jpg, bus_jpg):
    from web.app import create_app

    private = RedisServer(free_port(), tmp_path / "redis").start()
    worker = WorkerProcess("w-private", worker_env(data_dir, private.url, SERVER), ("vision", "text"),
                           log_dir=tmp_path).start()
    try:
        worker.wait_ready(120)
        settings = load_settings(redis_url=private.url, data_dir=data_dir,
                                 models_dir=REPO_ROOT / "var" / "models", server=SERVER)
        client = create_app(settings).test_client()
        assert wait_job(client, submit(client, zidane_jpg, text=False))["status"] == "done"

        private.stop()
        started = time.monotonic()
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert not ready.get_json()["checks"]["redis"]["ok"]
        assert any(reason.startswith("redis:") for reason in ready.get_json()["reasons"])
        down = client.post("/api/v1/analyze", json={"image": base64.b64encode(bus_jpg.read_bytes()).decode()})
        assert down.status_code == 503
        assert down.get_json()["error"]["code"] == "queue_unavailable"
        assert "Redis" in down.get_json()["error"]["message"]
        assert time.monotonic() - started < 15, "answering during the outage took too long"

        private.start()
        deadline = time.monotonic() + 30
        while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert client.get("/readyz").status_code == 200
        job = wait_job(client, submit(client, bus_jpg, text=False), timeout=180)
        assert job["status"] == "done", job
        assert "bus" in {r["label"] for r in job["result"]["regions"]}
    finally:
        worker.stop()
        private.stop()


def test_stages_recorded_by_the_workers_stream_to_the_client(gateway):
    """Stages written by real worker processes into Redis reach the client as server-sent
    events, in order, ending with the finished job."""
    photo = osie(3)[2]
    body = submit(gateway, photo)
    assert body["status_url"].endswith(body["job_id"])
    stream = gateway.get(f"{body['status_url']}/events")
    assert stream.status_code == 200 and stream.mimetype == "text/event-stream"
    chunks = [c for c in stream.get_data(as_text=True).split("\n\n") if c.startswith("event: ")]
    names = [c.split("\n", 1)[0].removeprefix("event: ") for c in chunks]
    assert names[-1] == "end", names
    job = json.loads(chunks[-1].split("data: ", 1)[1])
    assert job["status"] == "done" and job["result"]["image_id"] == hashlib.sha256(photo.read_bytes()).hexdigest()
    stages = [s["stage"] for s in job["stages"]]
    assert stages[0] == "uploaded" and stages[-1] == "done"
    assert {"detecting", "reading_text"} <= set(stages), stages

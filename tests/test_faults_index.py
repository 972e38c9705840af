"""The index writer SIGKILLed in the middle of a catalog save started through the API.

Real processes: a private redis-server, a `vision` worker (searches), an `index` worker (catalog
writes) and the gunicorn gateway. To land the kill inside Catalog.save() rather than before or
after it, the index worker runs a test-only Celery app module (written to tmp_path, never part
of the product) that wraps lens.files._write_chunks: while a `vectors-*.faiss` temp file
is half written it records its pid and stalls, but only while a trigger file exists. The test
then SIGKILLs that pool process; Celery's main process notices the lost child and, with
acks_late + reject_on_worker_lost, puts the write back on the queue for the respawned child.

- killed once: the redelivered write completes, the API answers 201, the items saved before
  give the same search results as before the kill;
- killed on every attempt: after server.max_attempts the write answers with a clear error
  (not a timeout), the catalog gives exactly the same search results, and the next write works.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import requests

from lens.config import REPO_ROOT
from workers.local import wait_until_healthy

pytestmark = pytest.mark.slow
API_KEY = "index-faults-key"
STAMPS = Path("/usr/share/tuxpaint/stamps")
MAX_ATTEMPTS = 2

# The index worker's Celery app: the real one, plus the stall in the middle of a faiss save.
FAULT_WORKER = textwrap.dedent('''
    import os, time
    from pathlib import Path
    from lens import files as storage
    from workers.worker import app  # noqa: F401  (celery -A finds it here)

    FAULT_DIR = Path(os.environ["INDEX_FAULT_DIR"])
    _real_write_chunks = storage._write_chunks

    def _stall_mid_vectors_write(fh, data):
        if ".vectors-" not in os.path.basename(fh.name) or not (FAULT_DIR / "stall").exists():
            return _real_write_chunks(fh, data)
        fh.write(data[: len(data) // 2])
        fh.flush()
        (FAULT_DIR / f"stalled-{os.getpid()}").write_text(fh.name)
        time.sleep(600)  # until SIGKILLed

    storage._write_chunks = _stall_mid_vectors_write
''')


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fault_index_worker(env: dict[str, str], log_dir: Path):
    """An `index` worker started exactly as WorkerProcess starts one, but with the fault app."""
    from workers.local import WorkerProcess

    class FaultIndexWorker(WorkerProcess):
        def start(self) -> FaultIndexWorker:
            log = self.log_path.open("wb")
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "fault_worker", "worker", "-Q", "index", "-c", "1",
                 "-P", "prefork", "-n", f"{self.name}@%h", "--loglevel", "INFO", "--without-gossip",
                 "--without-mingle", "--without-heartbeat"],
                cwd=REPO_ROOT, env=self._env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            return self

    return FaultIndexWorker("ixf-index", env, queues=("index",), log_dir=log_dir).start()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    from workers.local import RedisServer, WorkerProcess

    photos = sorted(STAMPS.rglob("*.png"))[:40:5]
    if len(photos) < 8:
        pytest.skip(f"no tux stamps under {STAMPS} (Debian tuxpaint-stamps-default)")
    root = tmp_path_factory.mktemp("index-faults")
    fault_dir = root / "fault"
    fault_dir.mkdir()
    (root / "fault_worker.py").write_text(FAULT_WORKER)
    redis_server = RedisServer(free_port(), root / "redis").start()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LENS_")}
    env.update({
        "LENS_REDIS_URL": redis_server.url, "LENS_DATA_DIR": str(root / "data"),
        "LENS_MODELS_DIR": str(REPO_ROOT / "var" / "models"), "LENS_API_KEY": API_KEY,
        "LENS_SERVER__RATE_LIMIT_PER_MINUTE": "0", "LENS_SERVER__MAX_ATTEMPTS": str(MAX_ATTEMPTS),
        # Each attempt restarts a pool process and loads the embedder again (seconds on 2 busy
        # cores); production waits 60 s for a catalog write.
        "LENS_SERVER__SYNC_TIMEOUT_S": "180", "OMP_NUM_THREADS": "1",
        "INDEX_FAULT_DIR": str(fault_dir), "PYTHONPATH": f"{root}{os.pathsep}{REPO_ROOT}",
    })
    workers = [
        WorkerProcess("ixf-vision", env, queues=("vision",), log_dir=root).start(),
        fault_index_worker(env, root),
    ]
    log = (root / "gateway.log").open("wb")
    gateway = subprocess.Popen(
        [sys.executable, "-m", "lens.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for worker in workers:
            worker.wait_ready(120)
        wait_until_healthy(base, gateway)
        for photo in photos[:4]:
            response = add_item(base, photo)
            assert response.status_code == 201, response.text
        yield {"base": base, "photos": photos, "fault_dir": fault_dir, "catalog": root / "data" / "catalog"}
    finally:
        if gateway.poll() is None:
            os.killpg(gateway.pid, signal.SIGTERM)
            try:
                gateway.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(gateway.pid, signal.SIGKILL)
        log.close()
        for worker in workers:
            worker.stop()
        redis_server.stop()


def add_item(base: str, photo: Path) -> requests.Response:
    return requests.post(f"{base}/api/v1/items", files={"image": (photo.name, photo.read_bytes())},
                         data={"title": photo.stem}, headers={"Authorization": f"Bearer {API_KEY}"},
                         timeout=240)


def search(base: str, photo: Path) -> list[tuple[int, float]]:
    response = requests.post(f"{base}/api/v1/search", files={"image": (photo.name, photo.read_bytes())},
                             data={"k": "10"}, timeout=180)
    assert response.status_code == 200, response.text
    return [(m["item_id"], round(m["score"], 4)) for m in response.json()["matches"]]


def add_killing_the_writer(fleet, photo: Path, kills: int, last_attempt_stalls: bool) -> requests.Response:
    """POST the item on a thread; SIGKILL the index pool process `kills` times, each time while
    it is half-way through writing the new faiss file; return the API's answer. The attempt
    after the last kill saves normally unless last_attempt_stalls (then it must not run)."""
    fault_dir: Path = fleet["fault_dir"]
    (fault_dir / "stall").touch()
    answer: list[requests.Response] = []
    poster = threading.Thread(target=lambda: answer.append(add_item(fleet["base"], photo)), daemon=True)
    poster.start()
    try:
        for kill in range(kills):
            marker = wait_for_stall(fault_dir, poster)
            pid = int(marker.name.removeprefix("stalled-"))
            temp = Path(marker.read_text())
            assert temp.exists() and temp.stat().st_size > 0, "the kill must land mid-write of the new index"
            # While the writer hangs mid-save, the gateway still answers.
            assert requests.get(f"{fleet['base']}/healthz", timeout=5).status_code == 200
            if kill == kills - 1 and not last_attempt_stalls:
                (fault_dir / "stall").unlink()
            marker.unlink()
            os.kill(pid, signal.SIGKILL)
        poster.join(240)
    finally:
        (fault_dir / "stall").unlink(missing_ok=True)
    assert not list(fault_dir.glob("stalled-*")), "an attempt ran after the last allowed one"
    assert answer, "the add request did not return"
    return answer[0]


def wait_for_stall(fault_dir: Path, poster: threading.Thread) -> Path:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        markers = list(fault_dir.glob("stalled-*"))
        if markers:
            return markers[0]
        assert poster.is_alive(), "the write finished without reaching the stalled save"
        time.sleep(0.1)
    raise AssertionError("the index worker never reached the save")


def test_index_writer_killed_once_mid_save_retries_and_keeps_catalog(fleet):
    base, photos = fleet["base"], fleet["photos"]
    query = photos[0]
    before = search(base, query)
    assert before and before[0][1] > 0.99, before  # the query photo itself is in the catalog

    response = add_killing_the_writer(fleet, photos[4], kills=1, last_attempt_stalls=False)
    # Redelivered to the respawned index process, the write completed.
    assert response.status_code == 201, response.text
    new_id = response.json()["item"]["id"]
    # Items saved before the kill answer exactly as before; the new one may join the list.
    after = [m for m in search(base, query) if m[0] != new_id]
    assert after == before[: len(after)] and len(after) >= len(before) - 1
    assert search(base, photos[4])[0][0] == new_id
    assert not list(fleet["catalog"].glob(".vectors-*.tmp-*")), "a torn temp file was left behind"


def test_index_writer_killed_on_every_attempt_fails_clearly(fleet):
    base, photos = fleet["base"], fleet["photos"]
    query = photos[1]
    before = search(base, query)

    started = time.monotonic()
    # MAX_ATTEMPTS attempts die mid-save; the next delivery gives up with a message.
    response = add_killing_the_writer(fleet, photos[5], kills=MAX_ATTEMPTS, last_attempt_stalls=True)
    assert response.status_code == 500, response.text
    error = response.json()["error"]
    assert error["code"] == "index_write_failed"
    assert f"after {MAX_ATTEMPTS} attempts" in error["message"] and "Traceback" not in error["message"]
    assert time.monotonic() - started < 180  # an answer, not the gateway's timeout

    assert search(base, query) == before  # nothing of the failed write is visible
    assert requests.get(f"{base}/readyz", timeout=10).status_code == 200
    # The index queue is not blocked: the next write goes through.
    again = add_item(base, photos[6])
    assert again.status_code == 201, again.text
    assert search(base, photos[6])[0][0] == again.json()["item"]["id"]

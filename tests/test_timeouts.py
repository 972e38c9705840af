"""Request and task time limits with real processes on loopback.

- Slow clients (slowloris): a client that sends its headers and part of a body, then nothing,
  is answered 408 and cut off after server.request_timeout_s by the embedded server (Werkzeug)
  and by the gateway (gunicorn gthread); one that never finishes its headers is cut off by the
  embedded server. Meanwhile, and afterwards, the server answers others; more stalled clients
  than the gateway has threads do not lock it up.
- An analysis whose branches outlive the hard time limit (stuck where the soft limit's
  exception cannot reach, as in native model code) fails the job with a clear message.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import requests

from lens.config import REPO_ROOT
from workers.local import wait_until_healthy

pytestmark = pytest.mark.slow
REQUEST_TIMEOUT_S = 2
# What a stalled client may wait in all: the timeout plus slack for a loaded 2-core machine.
CUT_OFF_WITHIN_S = REQUEST_TIMEOUT_S + 10

# A worker app whose branches hang and swallow the soft limit: only the hard limit ends them.
STUCK_WORKER = textwrap.dedent('''
    import time
    from celery.exceptions import SoftTimeLimitExceeded
    from lens.pipeline import Pipeline
    from workers.worker import app  # noqa: F401  (celery -A finds it here)

    def _stuck(*args, **kwargs):
        while True:
            try:
                time.sleep(60)
            except SoftTimeLimitExceeded:
                pass

    Pipeline.find_regions = _stuck
    Pipeline.read_text = _stuck
''')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LENS_")}
    env.update({
        "LENS_DATA_DIR": str(data_dir), "LENS_MODELS_DIR": str(REPO_ROOT / "var" / "models"),
        "LENS_SERVER__REQUEST_TIMEOUT_S": str(REQUEST_TIMEOUT_S), "LENS_SERVER__RATE_LIMIT_PER_MINUTE": "0",
        # Nothing here needs detection or translation; fewer models to warm on 2 shared cores.
        "LENS_DETECT__BACKEND": "none", "LENS_SALIENCY__BACKEND": "none", "LENS_TRANSLATE__BACKEND": "none",
        "OMP_NUM_THREADS": "1",
    })
    return env


class Server:
    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lens.cli", "serve", *args, "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=log_path.parent, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.base = f"http://127.0.0.1:{self.port}"
        wait_until_healthy(self.base, self.proc, log_path=log_path)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    root = tmp_path_factory.mktemp("timeouts-embedded")
    server = Server(["--embedded"], base_env(root / "data"), root / "server.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """Private Redis, the gunicorn gateway (1 process x 2 threads: few slots to exhaust) and one
    worker running the stuck-branch app with a 1 s soft / 3 s hard task limit."""
    from workers.local import RedisServer, WorkerProcess

    root = tmp_path_factory.mktemp("timeouts-fleet")
    (root / "stuck_worker.py").write_text(STUCK_WORKER)
    redis_server = RedisServer(free_port(), root / "redis").start()
    env = base_env(root / "data") | {
        "LENS_REDIS_URL": redis_server.url, "LENS_SERVER__GATEWAY_WORKERS": "1",
        "LENS_SERVER__GATEWAY_THREADS": "2", "LENS_SERVER__TASK_SOFT_TIME_LIMIT_S": "1",
        "LENS_SERVER__TASK_HARD_TIME_LIMIT_S": "3", "LENS_SERVER__VISIBILITY_TIMEOUT_S": "30",
        "PYTHONPATH": f"{root}{os.pathsep}{REPO_ROOT}",
    }

    class StuckWorker(WorkerProcess):
        def start(self) -> StuckWorker:
            log = self.log_path.open("wb")
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "stuck_worker", "worker", "-Q", self.queues, "-c", "1",
                 "-P", "prefork", "-n", f"{self.name}@%h", "--loglevel", "INFO", "--without-gossip",
                 "--without-mingle", "--without-heartbeat"],
                cwd=REPO_ROOT, env=self._env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            return self

    worker = StuckWorker("timeouts-stuck", env, queues=("vision", "text"), log_dir=root).start()
    gateway = None
    try:
        gateway = Server([], env, root / "gateway.log")
        worker.wait_ready(120)
        yield gateway
    finally:
        if gateway is not None:
            gateway.stop()
        worker.stop()
        redis_server.stop()


def stall(port: int, phase: str) -> socket.socket:
    """Open a request and stop sending half-way: in the body or in the headers."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    head = f"POST /api/v1/analyze HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    if phase == "body":
        boundary = "lensboundary"
        body_start = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"p.jpg\"\r\n"
                      "Content-Type: image/jpeg\r\n\r\n").encode() + b"\xff\xd8\xff" + b"\0" * 1000
        sock.sendall((head + f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                      "Content-Length: 200000\r\n\r\n").encode() + body_start)
    else:
        sock.sendall(head.encode())
    return sock


def wait_cut_off(sock: socket.socket) -> tuple[float, bytes]:
    """Seconds until the server answers or closes the stalled request, and what it sent."""
    started = time.monotonic()
    sock.settimeout(CUT_OFF_WITHIN_S + 5)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    finally:
        sock.close()
    return time.monotonic() - started, received


@pytest.mark.parametrize(("server", "phase"), [("embedded", "body"), ("embedded", "headers"), ("fleet", "body")])
def test_a_stalled_request_is_cut_off(request, server, phase):
    target = request.getfixturevalue(server)
    sock = stall(target.port, phase)
    # While it stalls, others are served.
    assert requests.get(f"{target.base}/healthz", timeout=5).status_code == 200
    waited, received = wait_cut_off(sock)
    assert waited < CUT_OFF_WITHIN_S, f"a stalled {phase} held its connection for {waited:.0f} s"
    if phase == "body":
        status_line = received.split(b"\r\n", 1)[0]
        assert b" 408 " in status_line, received[:300]
        assert b"request_timeout" in received and b"stalled" in received
    assert requests.get(f"{target.base}/healthz", timeout=5).status_code == 200


def test_more_stalled_bodies_than_gateway_threads_do_not_lock_it(fleet):
    stalled = [stall(fleet.port, "body") for _ in range(6)]  # the gateway has 2 threads
    try:
        started = time.monotonic()
        response = requests.get(f"{fleet.base}/healthz", timeout=CUT_OFF_WITHIN_S + 5)
        assert response.status_code == 200
        assert time.monotonic() - started < CUT_OFF_WITHIN_S * 2
    finally:
        for sock in stalled:
            sock.close()


def test_an_analysis_past_the_hard_time_limit_fails_clearly(fleet, bus_jpg):
    response = requests.post(f"{fleet.base}/api/v1/analyze", files={"image": ("bus.jpg", bus_jpg.read_bytes())},
                             timeout=30)
    assert response.status_code == 202, response.text
    url = f"{fleet.base}{response.json()['status_url']}"
    deadline = time.monotonic() + 120
    body: dict = {}
    while time.monotonic() < deadline:
        body = requests.get(url, timeout=10).json()
        if body["status"] in ("done", "failed"):
            break
        time.sleep(0.5)
    assert body.get("status") == "failed", body
    message = body["message"]
    assert "hard limit of 3 s" in message and "regions:" in message and "text:" in message, message
    assert "Traceback" not in message
    assert requests.get(f"{fleet.base}/healthz", timeout=5).status_code == 200

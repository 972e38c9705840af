"""`make up` / `make down` for real: scripts/fleet.sh starts a worker and the gunicorn gateway,
the gateway answers and a photo is analysed, then `down` stops exactly what `up` started."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from lens.config import REPO_ROOT
from workers.local import RedisServer

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def test_fleet_script_up_serves_a_photo_and_down_stops_everything(tmp_path, zidane_jpg):
    redis_server = RedisServer(free_port(), tmp_path / "redis").start()  # answers: up must not start one
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LENS_")}
    env.update({"LENS_REDIS_URL": redis_server.url, "LENS_DATA_DIR": str(tmp_path / "data"),
                "LENS_MODELS_DIR": str(REPO_ROOT / "var" / "models"), "FLEET_DIR": str(tmp_path / "fleet")})
    script = str(REPO_ROOT / "scripts" / "fleet.sh")
    try:
        up = subprocess.run([script, "up", "1", "127.0.0.1", str(port)], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
        assert up.returncode == 0, up.stderr
        assert f"http://127.0.0.1:{port}/" in up.stdout
        pids = {p.stem: int(p.read_text()) for p in (tmp_path / "fleet" / "run").glob("*.pid")}
        assert set(pids) == {"gateway", "worker1"}, pids
        body = json.dumps({"image": base64.b64encode(zidane_jpg.read_bytes()).decode()}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/analyze", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            job = json.loads(response.read())
        deadline = time.monotonic() + 180
        while job["status"] not in ("done", "failed") and time.monotonic() < deadline:
            time.sleep(0.5)
            job = get(f"http://127.0.0.1:{port}{job['status_url']}")
        assert job["status"] == "done", job
        assert "person" in {r["label"] for r in job["result"]["regions"]}
    finally:
        down = subprocess.run([script, "down"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
        redis_server.stop()
    assert down.returncode == 0, down.stderr
    assert not list((tmp_path / "fleet" / "run").glob("*.pid"))
    for name, pid in pids.items():
        assert not Path(f"/proc/{pid}").exists(), f"{name} (pid {pid}) still runs after down"

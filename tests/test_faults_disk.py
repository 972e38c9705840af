"""Disk full on upload, with a real server process: the uploads folder is a 1 MB tmpfs.

Uploads past the space left are refused with 507 and a sentence, no half-written file stays
behind, the catalog answers the same search as before, and once space is freed uploads work
again.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from lens.config import REPO_ROOT
from workers.local import stop_process, wait_until_healthy

pytestmark = pytest.mark.slow
STAMPS = Path("/usr/share/tuxpaint/stamps")
API_KEY = "disk-key"


def noise_png(seed: int, side: int = 320) -> bytes:
    """Incompressible pixels: ~300 KB per file, a new content hash per seed."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(side, side, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def small_disk_server(tmp_path):
    uploads = tmp_path / "data" / "uploads"
    uploads.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(uploads)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root/CAP_SYS_ADMIN): {mounted.stderr.strip()}")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LENS_")}
    env.update(LENS_DATA_DIR=str(tmp_path / "data"), LENS_MODELS_DIR=str(REPO_ROOT / "var" / "models"),
               LENS_SERVER__RATE_LIMIT_PER_MINUTE="0", LENS_API_KEY=API_KEY, OMP_NUM_THREADS="1")
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "lens.cli", "serve", "--embedded", "--port", str(port)],
                            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(base, proc)
        yield base, uploads
    finally:
        stop_process(proc)
        log.close()
        subprocess.run(["umount", str(uploads)], check=False)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def analyze(base: str, data: bytes) -> requests.Response:
    return requests.post(f"{base}/api/v1/analyze", files={"image": ("p.png", data)},
                         data={"regions": "false", "text": "false"}, timeout=60)


def search(base: str, photo: Path) -> list[tuple[int, float]]:
    response = requests.post(f"{base}/api/v1/search", files={"image": (photo.name, photo.read_bytes())},
                             timeout=120)
    assert response.status_code == 200, response.text
    return [(m["item_id"], round(m["score"], 4)) for m in response.json()["matches"]]


def test_disk_full_on_upload(small_disk_server):
    base, uploads = small_disk_server
    photos = sorted(STAMPS.rglob("*.png"))[:3]
    if not photos:
        pytest.skip("no tux stamps (Debian tuxpaint-stamps-default)")
    for photo in photos:
        added = requests.post(f"{base}/api/v1/items", files={"image": (photo.name, photo.read_bytes())},
                              data={"title": photo.stem}, headers={"Authorization": f"Bearer {API_KEY}"},
                              timeout=120)
        assert added.status_code in (200, 201), added.text
    before = search(base, photos[0])

    statuses = []
    for seed in range(8):  # 8 x ~300 KB into 1 MB
        response = analyze(base, noise_png(seed))
        statuses.append(response.status_code)
        if response.status_code == 507:
            error = response.json()["error"]
            assert error["code"] == "storage_full" and "disk space" in error["message"]
    assert 200 in statuses and 507 in statuses, statuses
    assert set(statuses) <= {200, 507}
    assert not [p.name for p in uploads.iterdir() if p.name.startswith(".upload-")], "half-written file left"

    assert requests.get(f"{base}/healthz", timeout=10).status_code == 200
    assert search(base, photos[0]) == before  # the query photo is stored already: no new space
    # Free the space (what the retention sweep does); uploads work again.
    for path in uploads.iterdir():
        path.unlink()
    assert analyze(base, noise_png(100)).status_code == 200

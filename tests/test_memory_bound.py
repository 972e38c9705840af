"""A stated memory bound for the embedded server (issue 13): its peak RSS (VmHWM) stays under
EMBEDDED_PEAK_RSS_MB through the hostile corpus, thin strips through every stage, and a large
photo, with all default models loaded and a small real catalog. Before the embedder stopped
padding crops to a square first, a single 20000x20 strip raised peak RSS by 2.6 GB.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from malformed import corpus
from PIL import Image
from test_fuzz_api import NO_MODELS, REPO, _free_port, build_small_catalog, check

from workers.local import stop_process, wait_until_healthy

pytestmark = pytest.mark.slow

# The embedded server runs every stage in one process: ~1.5 GB with the models and a small
# catalog, ~1.8 GB after the corpus and the strips (4.35 GB before: the 20000x20 strip alone
# added 2.6 GB), ~2.8 GB after the 48 MP photo, which is decoded at full size more than once
# (the upload check, the task, OCR's BGR copy). A 50 MP photo is the largest input accepted.
EMBEDDED_PEAK_RSS_MB = 3200


def status_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} for {pid}")


def encoded(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, quality=90)
    return buffer.getvalue()


def hostile_inputs(bus_jpg: Path) -> list[tuple[str, bytes, dict]]:
    """(name, bytes, form fields): the malformed corpus, thin strips and a large photo."""
    cases = [(c.name, c.data, {} if c.expect == "ok" else NO_MODELS) for c in corpus()]
    strip = Image.new("RGB", (20000, 20), "white")
    for name, size in (("strip_20000x20", (20000, 20)), ("strip_20x20000", (20, 20000)),
                       ("strip_6000x40", (6000, 40)), ("strip_24000x20", (24000, 20))):
        cases.append((name, encoded(strip.resize(size)), {}))
    big = Image.open(bus_jpg).convert("RGB").resize((6000, 8000))  # 48 MP: under the 50 MP limit
    cases.append(("photo_6000x8000", encoded(big, "JPEG"), {}))
    return cases


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    data = tmp_path_factory.mktemp("memory")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LENS_")}
    env.update(LENS_DATA_DIR=str(data), LENS_MODELS_DIR=str(REPO / "var" / "models"),
               LENS_SERVER__RATE_LIMIT_PER_MINUTE="0", LENS_API_KEY="fuzz-key",
               LENS_SERVER__RESULT_CACHE_TTL_S="0", OMP_NUM_THREADS="1")
    log = (data / "server.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "lens.cli", "serve", "--embedded", "--host", "127.0.0.1",
                             "--port", str(port)], cwd=data, env=env, stdout=log, stderr=subprocess.STDOUT)
    import requests

    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(base, proc, log_path=data / "server.log")
        session = requests.Session()
        session.base = base  # type: ignore[attr-defined]
        build_small_catalog(session)
        yield session, proc
    finally:
        stop_process(proc)
        log.close()
    server_log = (data / "server.log").read_text(errors="replace")
    assert "Traceback" not in server_log, server_log[-3000:]


def test_embedded_server_peak_rss_stays_under_its_bound(embedded, bus_jpg):
    session, proc = embedded
    loaded = status_mb(proc.pid, "VmRSS")
    for name, data, fields in hostile_inputs(bus_jpg):
        response = session.post(f"{session.base}/api/v1/analyze", files={"image": (name, data)},
                                data=fields, timeout=300)
        check(response)
        assert response.status_code < 500, name
    peak = status_mb(proc.pid, "VmHWM")
    print(f"embedded server: {loaded:.0f} MB with the catalog loaded, peak {peak:.0f} MB")
    assert peak < EMBEDDED_PEAK_RSS_MB, f"peak RSS {peak:.0f} MB (bound {EMBEDDED_PEAK_RSS_MB} MB)"

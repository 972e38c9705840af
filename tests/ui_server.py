"""Helpers for the browser tests: Debian's Chromium, a static copy of the gateway's page, and
the real one-process server (`lens serve --embedded`).

Chromium is never downloaded: Playwright drives /usr/bin/chromium (Debian package `chromium`,
installed by scripts/setup.sh).
"""

from __future__ import annotations

import contextlib
import http.server
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
STATIC_DIR = REPO_ROOT / "web" / "static"
ARTIFACTS = REPO_ROOT / "test-artifacts" / "ui"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
# What the gateway promises to send: no 'unsafe-inline' anywhere, blob: for the local preview.
STRICT_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
FONTS = Path("/usr/share/fonts/truetype/dejavu")
OSIE = REPO_ROOT.parent / "shared" / "data" / "osie" / "stimuli"
SIGN_COLOUR = (246, 240, 222)
VIEWPORTS = {"phone": {"width": 360, "height": 740}, "desktop": {"width": 1280, "height": 800}}


def launch_chromium(playwright):
    if not CHROMIUM.exists():
        import pytest

        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium (scripts/setup.sh lists it)")
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RecordedRequest:
    path: str
    content_type: str
    body: bytes

    def form(self) -> dict[str, bytes]:
        """Multipart fields by name (file fields as their bytes)."""
        header = f"Content-Type: {self.content_type}\r\n\r\n".encode()
        message = BytesParser(policy=HTTP).parsebytes(header + self.body)
        return {
            part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
            for part in message.iter_parts()
        }


@dataclass
class StaticUi:
    """Serves web/static exactly where the gateway does (`/` and `/static/`) with a strict CSP.

    The API answers with one fixed error, which is what the page tests exercise (error words,
    retry, what was uploaded); results come only from the real server in test_ui_e2e.py.
    """

    api_status: int = 503
    api_error: dict = field(default_factory=lambda: {
        "error": {"code": "unavailable", "message": "The analysis service is not running."}
    })
    requests: list[RecordedRequest] = field(default_factory=list)

    def __enter__(self) -> StaticUi:
        ui = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def translate_path(self, path: str) -> str:
                path = path.split("?", 1)[0]
                if path == "/":
                    path = "/index.html"
                elif path.startswith("/static/"):
                    path = path[len("/static"):]
                return str(STATIC_DIR / path.lstrip("/"))

            def end_headers(self) -> None:
                self.send_header("Content-Security-Policy", STRICT_CSP)
                self.send_header("Cache-Control", "no-store")
                super().end_headers()

            def do_GET(self) -> None:
                # The API's GETs (/api/v1/languages) get the same one error; not recorded, the
                # tests look at what was uploaded.
                if self.path.startswith("/api/"):
                    self._api_error()
                else:
                    super().do_GET()

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                ui.requests.append(
                    RecordedRequest(self.path, self.headers.get("Content-Type", ""), self.rfile.read(length))
                )
                self._api_error()

            def _api_error(self) -> None:
                body = json.dumps(ui.api_error).encode()
                self.send_response(ui.api_status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_port}/"
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


def lens_command() -> list[str]:
    exe = Path(sys.executable).with_name("lens")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "lens.cli"]


def lens_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LENS_")}
    env.update({
        "LENS_DATA_DIR": str(data_dir),
        # Prepared models are shared (made by `make setup`); everything written goes to data_dir.
        "LENS_MODELS_DIR": str(REPO_ROOT / "var" / "models"),
        # The UI tests check how matches are shown, for the bus photo against the stamp catalog,
        # which has nothing close to a bus: no score floor, and dots keep the detector's label.
        "LENS_INDEX__MATCH_FLOOR": "-1", "LENS_INDEX__LABEL_FLOOR": "10",
        "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
    })
    return env


def lens_has_command(name: str) -> bool:
    out = subprocess.run(lens_command() + ["--help"], capture_output=True, text=True, cwd=REPO_ROOT)
    return f"{name}" in out.stdout


class EmbeddedServer:
    """`lens serve --embedded` on a free port, its log in data_dir/serve.log."""

    def __init__(self, data_dir: Path, slow_stages: dict[str, float] | None = None,
                 env: dict[str, str] | None = None, log_name: str = "serve.log") -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = data_dir / log_name
        self.process: subprocess.Popen | None = None
        # Stages to slow down (tests/slow_serve.py), so that a test can watch the progress.
        self.slow_stages = slow_stages or {}
        self.env = env or {}

    def start(self, timeout_s: float = 180.0) -> EmbeddedServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        command = lens_command()
        if self.slow_stages:
            command = [sys.executable, str(REPO_ROOT / "tests" / "slow_serve.py")]
            for name, seconds in self.slow_stages.items():
                command += ["--slow", f"{name}={seconds}"]
        self.process = subprocess.Popen(
            command + ["serve", "--embedded", "--host", "127.0.0.1", "--port", str(self.port)],
            env={**lens_env(self.data_dir), **self.env}, cwd=self.data_dir, stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"lens serve exited with {self.process.returncode}:\n{self.log()}")
            with contextlib.suppress(OSError, urllib.error.URLError), urllib.request.urlopen(
                self.url + "healthz", timeout=2
            ) as response:
                if response.status == 200:
                    return self
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"lens serve did not answer /healthz in {timeout_s:.0f} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def build_stamp_catalog(data_dir: Path, work_dir: Path, every: int = 15, timeout_s: float = 900.0) -> int:
    """A small catalog of real Tux Paint photo stamps (the demo catalog's source): every vehicle
    and person, and every `every`-th other stamp, indexed with `lens index add` and a metadata
    CSV (captions as titles, a link per item). The full `lens demo-catalog` (421 stamps) takes
    minutes on a shared 2-core machine; this subset keeps the UI tests to about one."""
    import csv

    from lens.index.demo import tux_stamps

    stamps = tux_stamps()
    if not stamps:
        import pytest

        pytest.skip("Debian package tuxpaint-stamps-default is not installed")
    chosen = [s for i, s in enumerate(stamps)
              if s.label.startswith(("vehicles", "people")) or i % every == 0]
    folder = work_dir / "stamps"
    folder.mkdir(parents=True, exist_ok=True)
    with (work_dir / "items.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "title", "url"])
        for n, stamp in enumerate(chosen):
            name = f"{n:03d}-{stamp.path.name}"
            (folder / name).symlink_to(stamp.path)
            writer.writerow([name, stamp.title, f"https://example.org/stamps/{stamp.path.stem}"])
    result = subprocess.run(
        lens_command() + ["index", "add", str(folder), "--meta", str(work_dir / "items.csv")],
        env=lens_env(data_dir), cwd=data_dir, capture_output=True, text=True, timeout=timeout_s,
    )
    if result.returncode != 0:
        raise RuntimeError(f"lens index add failed ({result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return len(chosen)


def clear_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)


def sign_photo(path: Path, base: str, lines: list[str], font_file: str, size: int) -> Path:
    """A real OSIE photo with a painted sign on it, the text set in a real font."""
    photo = OSIE / base
    if not photo.exists():
        import pytest

        pytest.skip(f"OSIE photo {photo} not found")
    from PIL import Image, ImageDraw, ImageFont

    image = Image.open(photo).convert("RGB")
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(str(FONTS / font_file), size)
    boxes = [draw.textbbox((0, 0), line, font=font) for line in lines]
    pad, gap = size // 2, size // 3
    width = max(b[2] - b[0] for b in boxes) + 2 * pad
    height = sum(b[3] - b[1] for b in boxes) + gap * (len(lines) - 1) + 2 * pad
    x0 = (image.width - width) // 2
    y0 = int(image.height * 0.55) - height // 2
    draw.rounded_rectangle((x0, y0, x0 + width, y0 + height), radius=10, fill=SIGN_COLOUR,
                           outline=(70, 60, 50), width=3)
    y = y0 + pad
    for line, box in zip(lines, boxes, strict=True):
        draw.text((x0 + pad - box[0], y - box[1]), line, font=font, fill=(25, 25, 30))
        y += box[3] - box[1] + gap
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95)
    path.write_bytes(buffer.getvalue())
    return path

"""Throughput of the fleet shape: photos/s and end-to-end latency (p50/p95) for 1, 2 and 4
concurrent clients against 1 and 2 Celery worker processes (concurrency 1 each, one thread per
library), and each stage's share of the compute time.

Everything runs on this machine over loopback: a private redis-server, real `celery worker`
processes, the gunicorn gateway, HTTP clients in threads. Every row analyses the same OSIE
photos with the result cache turned off (result_cache_ttl_s=0; the cache is measured by the
tests: zero tasks on a repeat), so rows differ only in workers and clients. Each worker set is
warmed up first on other photos (models load on first use), and the catalog holds
tux-stamp items added through the API, so the search stage runs. A client sends a photo, polls
its job every 50 ms until done, then sends the next: a closed loop.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from bench import OSIE_DIR, REPO_ROOT, BenchContext, Table
from workers.local import RedisServer, WorkerProcess

STAMPS = Path("/usr/share/tuxpaint/stamps")
API_KEY = "bench-throughput-key"
WORKER_COUNTS = (1, 2)
CLIENT_COUNTS = (1, 2, 4)
STAGES = ("detect", "saliency", "select", "embed", "search", "rerank", "ocr", "langid", "translate")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, body: dict | None = None, headers: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


class Fleet:
    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.redis = RedisServer(free_port(), work_dir / "redis")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers: list[WorkerProcess] = []
        self.gateway: subprocess.Popen | None = None
        server = {"rate_limit_per_minute": 0, "result_cache_ttl_s": 0}
        from lens.config import ServerConfig

        server = {k: v for k, v in server.items() if k in ServerConfig.model_fields}
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("LENS_")}
        self.env.update({
            "LENS_REDIS_URL": "", "LENS_DATA_DIR": str(work_dir / "data"), "LENS_API_KEY": API_KEY,
            "LENS_MODELS_DIR": str(REPO_ROOT / "var" / "models"),
            **{f"LENS_SERVER__{k.upper()}": str(v) for k, v in server.items()},
        })

    def start(self) -> None:
        self.redis.start()
        self.env["LENS_REDIS_URL"] = self.redis.url
        self.gateway = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{self.port}", "--workers", "1",
             "--threads", "8", "--worker-class", "gthread", "web.app:create_app()"],
            cwd=REPO_ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if http("GET", self.url + "/healthz")[0] == 200:
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("the gateway did not start")

    def set_workers(self, count: int) -> None:
        while len(self.workers) < count:
            n = len(self.workers) + 1
            queues = ("vision", "text", "index") if n == 1 else ("vision", "text")
            worker = WorkerProcess(f"bench{n}", self.env, queues, log_dir=self.work_dir / "logs").start()
            worker.wait_ready(180)
            self.workers.append(worker)
        while len(self.workers) > count:
            self.workers.pop().stop()

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        if self.gateway is not None:
            self.gateway.terminate()
            self.gateway.wait(20)
        self.redis.stop()


def analyze(url: str, photo: Path) -> dict:
    """Send one photo and wait for its result; returns the job with latency_s."""
    start = time.perf_counter()
    status, body = http("POST", url + "/api/v1/analyze", {"image": base64.b64encode(photo.read_bytes()).decode()})
    if status not in (200, 202):
        raise RuntimeError(f"analyze answered {status}: {body}")
    while body.get("status") not in ("done", "failed"):
        time.sleep(0.05)
        status, body = http("GET", url + body["status_url"])
    if body["status"] != "done":
        raise RuntimeError(f"job failed: {body.get('message')}")
    body["latency_s"] = time.perf_counter() - start
    return body


def run_clients(url: str, photos: list[Path], clients: int) -> tuple[float, list[dict]]:
    queue = list(photos)
    lock = threading.Lock()
    jobs: list[dict] = []
    errors: list[BaseException] = []

    def client() -> None:
        while True:
            with lock:
                if not queue or errors:
                    return
                photo = queue.pop()
            try:
                job = analyze(url, photo)
            except Exception as exc:  # report after the run
                errors.append(exc)
                return
            with lock:
                jobs.append(job)

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - start, jobs


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(ctx: BenchContext) -> list[Table]:
    photos = sorted(OSIE_DIR.glob("stimuli/*.jpg"))
    per_config = 4 if ctx.quick else 12
    warmup = 3 * max(WORKER_COUNTS)
    if len(photos) < per_config + warmup:
        raise RuntimeError(f"need {per_config + warmup} OSIE photos in {OSIE_DIR / 'stimuli'}")
    batch, warmup_photos = photos[:per_config], photos[per_config:per_config + warmup]
    from bench.bench_speed import reference_ms

    ref_start = reference_ms()  # R of bench_speed, so that rows compare across runs as ratios
    fleet = Fleet(ctx.work_dir / "throughput")
    rows, stage_ms = [], {s: [] for s in STAGES}
    overhead_ms: list[float] = []
    try:
        fleet.start()
        fleet.set_workers(1)
        for stamp in sorted(STAMPS.rglob("*.png"))[:: 10][: 8 if ctx.quick else 32]:
            status, body = http("POST", fleet.url + "/api/v1/items",
                                {"image": base64.b64encode(stamp.read_bytes()).decode(), "title": stamp.stem},
                                {"Authorization": f"Bearer {API_KEY}"})
            if status != 201:
                raise RuntimeError(f"adding catalog items failed: {status} {body}")
        for workers in WORKER_COUNTS:
            fleet.set_workers(workers)
            # Warm-up: enough photos that every process has run both branches (loaded its models).
            run_clients(fleet.url, warmup_photos[: 3 * workers], 2 * workers)
            for clients in CLIENT_COUNTS:
                wall, jobs = run_clients(fleet.url, batch, clients)
                latencies = [j["latency_s"] for j in jobs]
                rows.append([workers, clients, len(jobs), round(len(jobs) / wall, 3),
                             round(statistics.median(latencies), 2), round(percentile(latencies, 0.95), 2)])
                for job in jobs:
                    timings = job["result"]["timings_ms"]
                    for stage in STAGES:
                        stage_ms[stage].append(timings.get(stage, 0.0))
                    branch = max(timings.get("regions_total", 0.0), timings.get("text_total", 0.0))
                    overhead_ms.append(timings["total"] - branch)
    finally:
        fleet.stop()
    ref_end = reference_ms()
    ref = statistics.median([ref_start, ref_end])
    for row in rows:  # photos per R (photos/s x R) and the p50 latency as a multiple of R
        row += [round(row[3] * ref / 1e3, 2), round(row[4] * 1e3 / ref, 2)]
    total = sum(sum(v) for v in stage_ms.values()) or 1.0
    stage_rows = [[s, round(statistics.mean(v), 1), f"{100 * sum(v) / total:.1f}%"] for s, v in stage_ms.items() if v]
    stage_rows.append(["(waiting: queue, the other branch on the same worker, merge; = total - longer branch)", round(statistics.mean(overhead_ms), 1), "-"])
    return [
        Table(
            "Throughput: photos/s and end-to-end latency (gunicorn gateway, Redis, N worker processes x 1)",
            ["workers", "clients", "photos", "photos/s", "p50 latency s", "p95 latency s", "photos per R",
             "p50 latency x R"],
            rows,
            notes=(f"The same {per_config} OSIE photos in every row, result cache off; closed-loop clients polling "
                   "every 50 ms; latency = upload to result. Both branches of a photo can run on different "
                   "workers. Machine shared with other jobs: compare rows of one run, not across runs, or "
                   f"the ratios to R (bench_speed's reference: 5 Lite2 crops, torch eager, 1 thread; {ref:.0f} ms "
                   f"in this run, end/start {ref_end / max(ref_start, 1e-9):.2f})."),
        ),
        Table(
            "Where the time goes: mean ms per photo and share of the compute time, all rows above",
            ["stage", "mean ms", "share"],
            stage_rows,
        ),
    ]

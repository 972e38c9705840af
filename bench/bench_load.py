"""Load: 16 concurrent clients for 60 s against the `make up` shape on loopback only — a private
Redis, 2 Celery worker processes, the gunicorn gateway — each client in a closed loop (send a
photo, poll until its job is done, repeat), so at most 16 jobs are in flight: bounded by design.

Half the photos are new OSIE photos (every stage runs), half repeat an earlier photo (served from
the result cache), as when many people photograph the same things. Reported: HTTP requests/s,
analyses/s, end-to-end analysis latency percentiles, errors (5xx, failed jobs, timeouts), and
worker memory (RSS of each worker's processes) after warm-up and at the end.
The rate limit is off for the run: every client is 127.0.0.1.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench import OSIE_DIR, REPO_ROOT, BenchContext, Table

CLIENTS = 16
DURATION_S = 60
WORKERS = 2
STAMPS = Path("/usr/share/tuxpaint/stamps")
API_KEY = "bench-load-key"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class Fleet:
    """Redis + workers + gunicorn gateway, as `make up` starts them, on loopback ports."""

    def __init__(self, work_dir: Path) -> None:
        from workers.local import RedisServer, WorkerProcess

        self.work_dir = work_dir
        self.redis = RedisServer(_free_port(), work_dir / "redis")
        self.port = _free_port()
        self.env = {
            "LENS_REDIS_URL": self.redis.url, "LENS_DATA_DIR": str(work_dir / "data"),
            "LENS_MODELS_DIR": str(REPO_ROOT / "var" / "models"), "LENS_API_KEY": API_KEY,
            "LENS_SERVER__RATE_LIMIT_PER_MINUTE": "0", "OMP_NUM_THREADS": "1",
        }
        self.workers = [WorkerProcess(f"load{i}", self.env, log_dir=work_dir) for i in range(WORKERS)]
        self.gateway: subprocess.Popen | None = None

    def __enter__(self) -> Fleet:
        self.redis.start()
        for worker in self.workers:
            worker.start()
        env = {k: v for k, v in os.environ.items() if not k.startswith("LENS_")} | self.env
        log = (self.work_dir / "gateway.log").open("wb")
        self.gateway = subprocess.Popen(
            [sys.executable, "-m", "lens.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=self.work_dir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        for worker in self.workers:
            worker.wait_ready(120)
        import requests

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return self
            except requests.ConnectionError:
                time.sleep(0.3)
        raise RuntimeError("gateway did not start")

    def __exit__(self, *exc) -> None:
        if self.gateway is not None and self.gateway.poll() is None:
            os.killpg(self.gateway.pid, 15)
            try:
                self.gateway.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.gateway.pid, 9)
        for worker in self.workers:
            worker.stop()
        self.redis.stop()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def worker_rss_mb(self) -> list[float]:
        return [_rss_mb([w.proc.pid, *w.child_pids()]) for w in self.workers if w.proc]


class Client(threading.Thread):
    def __init__(self, base: str, photos: list[bytes], repeats: list[bytes], stop_at: float, seed: int):
        super().__init__(daemon=True)
        import requests

        self.session = requests.Session()
        self.base, self.photos, self.repeats, self.stop_at = base, photos, repeats, stop_at
        self.rng = random.Random(seed)
        self.latencies: list[float] = []
        self.requests = 0
        self.errors: list[str] = []
        self.cached = 0

    def run(self) -> None:
        while time.monotonic() < self.stop_at:
            fresh = self.rng.random() < 0.5 and self.photos
            data = self.photos.pop() if fresh else self.rng.choice(self.repeats)
            self.one(data)

    def _call(self, method: str, url: str, **kw):
        self.requests += 1
        response = self.session.request(method, url, timeout=120, **kw)
        if response.status_code >= 500:
            self.errors.append(f"{response.status_code} {url}: {response.text[:120]}")
        return response

    def one(self, data: bytes) -> None:
        started = time.monotonic()
        response = self._call("POST", f"{self.base}/api/v1/analyze", files={"image": ("p.jpg", data)})
        if response.status_code == 200:
            self.cached += 1
            self.latencies.append(time.monotonic() - started)
            return
        if response.status_code != 202:
            self.errors.append(f"analyze {response.status_code}: {response.text[:120]}")
            return
        url = f"{self.base}{response.json()['status_url']}"
        deadline = started + 300  # bounded: a job not done in 5 min is an error
        while time.monotonic() < deadline:
            time.sleep(0.25)
            body = self._call("GET", url).json()
            if body.get("status") == "done":
                self.latencies.append(time.monotonic() - started)
                return
            if body.get("status") == "failed":
                self.errors.append(f"job failed: {body.get('message')}")
                return
        self.errors.append("job not done within 300 s")


def run(ctx: BenchContext) -> list[Table]:
    import requests

    clients, duration = (4, 10) if ctx.quick else (CLIENTS, DURATION_S)
    osie = sorted((OSIE_DIR / "stimuli").glob("*.jpg"))
    stamps = sorted(STAMPS.rglob("*.png"))[:5]
    if not osie or not stamps:
        return [Table("Load", ["note"], [["OSIE photos or tux stamps missing: skipped"]])]
    work_dir = ctx.work_dir / f"load-{os.getpid()}"
    work_dir.mkdir(parents=True, exist_ok=True)
    with Fleet(work_dir) as fleet:
        for stamp in stamps:
            requests.post(f"{fleet.base}/api/v1/items", files={"image": (stamp.name, stamp.read_bytes())},
                          data={"title": stamp.stem}, headers={"Authorization": f"Bearer {API_KEY}"},
                          timeout=120).raise_for_status()
        # Warm-up: every worker process loads its models; the repeat set gets cached.
        repeats = [p.read_bytes() for p in osie[:4]]
        warm = [Client(fleet.base, [], repeats, 0, i) for i in range(WORKERS * 2)]
        for client, data in zip(warm, repeats, strict=False):
            client.one(data)
        rss_start = fleet.worker_rss_mb()
        fresh = [p.read_bytes() for p in osie[4:4 + clients * 40]]
        stop_at = time.monotonic() + duration
        started = time.monotonic()
        workers = [Client(fleet.base, fresh[i::clients], repeats, stop_at, i) for i in range(clients)]
        for client in workers:
            client.start()
        for client in workers:
            client.join(400)
        elapsed = time.monotonic() - started
        rss_end = fleet.worker_rss_mb()
    latencies = [x for c in workers for x in c.latencies]
    errors = [e for c in workers for e in c.errors]
    total_requests = sum(c.requests for c in workers)
    cached = sum(c.cached for c in workers)
    rows = [[clients, WORKERS, round(elapsed, 1), total_requests, round(total_requests / elapsed, 2),
             len(latencies), round(len(latencies) / elapsed, 3), cached,
             round(_percentile(latencies, 0.5), 2), round(_percentile(latencies, 0.95), 2),
             round(_percentile(latencies, 0.99), 2), len(errors),
             " / ".join(f"{x:.0f}" for x in rss_start), " / ".join(f"{x:.0f}" for x in rss_end)]]
    notes = (f"{clients} closed-loop clients for {duration} s on loopback against Redis + {WORKERS} "
             "Celery workers (concurrency 1 each) + the gunicorn gateway (2 x 4 threads); half new "
             "OSIE photos, half repeats answered from the result cache. Latency: from POST analyze to "
             "the job read as done (includes 0.25 s polling). Requests/s counts every HTTP request "
             "(analyze + polls). RSS: each worker's main + pool process, MB.")
    if errors:
        notes += f" First errors: {errors[:3]}"
    return [Table("Load: 16 clients x 60 s against the fleet shape (bench_load)" if not ctx.quick
                  else "Load (quick smoke run)",
                  ["clients", "workers", "seconds", "HTTP requests", "requests/s", "analyses",
                   "analyses/s", "cached", "p50 s", "p95 s", "p99 s", "errors",
                   "worker RSS start MB", "worker RSS end MB"], rows, notes)]

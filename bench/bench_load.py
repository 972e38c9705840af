"""Load: 16 concurrent clients for 3 minutes against the `make up` shape on loopback only — a
private Redis, 2 Celery worker processes, the gunicorn gateway — each client in a closed loop
(send a photo, poll until its job is done, repeat), so at most 16 jobs are in flight: bounded by
design.

Every request is a different OSIE photo and the result cache is off, so every stage runs for
every request (the worst case for worker memory). Reported: HTTP requests/s, analyses/s,
end-to-end latency percentiles, errors (5xx, failed jobs, timeouts), and worker memory: RSS of
each worker's processes once the models are loaded (the background warm-up at process start),
after the first photos, and sampled every few seconds through the run, to see whether it levels
off. The rate limit is off for the run: every client is 127.0.0.1.
"""

from __future__ import annotations

import itertools
import os
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench import OSIE_DIR, REPO_ROOT, BenchContext, Table
from workers.local import wait_until_healthy

CLIENTS = 16
DURATION_S = 180
SAMPLE_EVERY_S = 5
# Stated bound on one worker's RSS (main + one pool process, default models, demo-sized
# catalog): 3-minute runs levelled off at 1.7-1.85 GB after the first few dozen photos, with
# samples up to 1.9 GB while a task runs (docs/deploy.md). A larger catalog adds ~5 KB per item
# to every vision worker.
RSS_BOUND_MB = 2200
# Stated bound on a worker's own peak (VmHWM of main + pool process), which also covers the
# hostile inputs: the largest accepted photo (48 MP here; 50 MP is the limit) is decoded at full
# size by both the regions and the text task, ~0.5 GB above the steady level for a moment (a
# quick run peaked at 2.39 GB). Thin strips no longer count: before the embedder stopped padding
# crops to a square first, the 20000x20 strip alone added 2.6 GB.
PEAK_RSS_BOUND_MB = 2700
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


def _peak_rss_mb(pids: list[int]) -> float:
    """Summed VmHWM (each process's own peak RSS), MB: catches peaks between samples."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def hostile_inputs() -> list[tuple[str, bytes]]:
    """The malformed-file corpus of the tests (tests/malformed.py), thin strips that go through
    every stage (20000x20 ...; 24000x20 is refused by its aspect ratio) and a 48 MP photo."""
    import importlib.util
    import io

    from PIL import Image

    spec = importlib.util.spec_from_file_location("malformed", REPO_ROOT / "tests" / "malformed.py")
    malformed = importlib.util.module_from_spec(spec)
    sys.modules["malformed"] = malformed  # its dataclasses look their module up
    spec.loader.exec_module(malformed)
    inputs = [(case.name, case.data) for case in malformed.corpus()]

    def encoded(image, fmt: str = "PNG") -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, format=fmt, quality=90)
        return buffer.getvalue()

    for size in ((20000, 20), (20, 20000), (6000, 40), (24000, 20)):
        inputs.append((f"strip_{size[0]}x{size[1]}", encoded(Image.new("RGB", size, "white"))))
    photo = sorted((OSIE_DIR / "stimuli").glob("*.jpg"))[0]
    inputs.append(("photo_6000x8000", encoded(Image.open(photo).convert("RGB").resize((6000, 8000)), "JPEG")))
    return inputs


def send_hostile(base: str) -> list[str]:
    """Each hostile input once, from one client; 4xx refusals are the expected answers, so only
    5xx, failed jobs and timeouts come back as errors."""
    client = Client(base, [], 0)
    for _name, data in hostile_inputs():
        client.one(data)
    return [e for e in client.errors if not e.startswith("analyze 4")]


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
            # Every photo runs every stage: no answer comes from the result cache.
            "LENS_SERVER__RESULT_CACHE_TTL_S": "0",
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
        wait_until_healthy(self.base, self.gateway, timeout=60, log_path=self.work_dir / "gateway.log")
        return self

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

    def worker_peak_rss_mb(self) -> list[float]:
        return [_peak_rss_mb([w.proc.pid, *w.child_pids()]) for w in self.workers if w.proc]

    def main_process_rss_mb(self) -> list[float]:
        return [_rss_mb([w.proc.pid]) for w in self.workers if w.proc]

    def wait_models_loaded(self, timeout_s: float = 180) -> float:
        """Seconds until every worker's RSS stops rising (the background warm-up is done):
        no change above 10 MB over 6 s, bounded by timeout_s."""
        started = time.monotonic()
        history: list[list[float]] = []
        while time.monotonic() - started < timeout_s:
            history.append(self.worker_rss_mb())
            if len(history) > 6 and all(abs(a - b) < 10 for a, b in zip(history[-7], history[-1], strict=True)):
                break
            time.sleep(1)
        return time.monotonic() - started


class RssSampler(threading.Thread):
    """Worker RSS every SAMPLE_EVERY_S seconds while the clients run."""

    def __init__(self, fleet: Fleet, clients: list[Client], stop_at: float) -> None:
        super().__init__(daemon=True)
        self.fleet, self.clients, self.stop_at = fleet, clients, stop_at
        self.samples: list[tuple[float, int, list[float]]] = []  # (seconds, analyses so far, MB)

    def run(self) -> None:
        started = time.monotonic()
        while True:
            done = sum(len(c.latencies) for c in self.clients)
            self.samples.append((time.monotonic() - started, done, self.fleet.worker_rss_mb()))
            if time.monotonic() >= self.stop_at:
                return
            time.sleep(SAMPLE_EVERY_S)


class Client(threading.Thread):
    def __init__(self, base: str, photos: list[Path], stop_at: float) -> None:
        super().__init__(daemon=True)
        import requests

        self.session = requests.Session()
        self.base, self.photos, self.stop_at = base, photos, stop_at
        self.latencies: list[float] = []
        self.requests = 0
        self.errors: list[str] = []
        self.cached = 0

    def run(self) -> None:
        # Distinct photos; a client that used up its share starts over (the cache is off, so a
        # repeat runs every stage again).
        for i in itertools.count():
            if time.monotonic() >= self.stop_at or not self.photos:
                return
            self.one(self.photos[i % len(self.photos)].read_bytes())

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

    clients, duration = (4, 15) if ctx.quick else (CLIENTS, DURATION_S)
    osie = sorted((OSIE_DIR / "stimuli").glob("*.jpg"))
    stamps = sorted(STAMPS.rglob("*.png"))[:5]
    if not osie or not stamps:
        return [Table("Load", ["note"], [["OSIE photos or tux stamps missing: skipped"]])]
    work_dir = ctx.work_dir / f"load-{os.getpid()}"
    work_dir.mkdir(parents=True, exist_ok=True)
    random.Random(0).shuffle(osie)
    warm_photos, fresh = osie[: WORKERS * 2], osie[WORKERS * 2 :]
    with Fleet(work_dir) as fleet:
        for stamp in stamps:
            requests.post(f"{fleet.base}/api/v1/items", files={"image": (stamp.name, stamp.read_bytes())},
                          data={"title": stamp.stem}, headers={"Authorization": f"Bearer {API_KEY}"},
                          timeout=120).raise_for_status()
        fleet.wait_models_loaded()
        rss_loaded = fleet.worker_rss_mb()
        # The first photos: buffers sized by real inputs, on every worker process.
        warm = [Client(fleet.base, [], 0) for _ in warm_photos]
        threads = [threading.Thread(target=c.one, args=(p.read_bytes(),)) for c, p in zip(warm, warm_photos, strict=True)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
        rss_start = fleet.worker_rss_mb()
        hostile_errors = send_hostile(fleet.base)
        rss_hostile, peak_hostile = fleet.worker_rss_mb(), fleet.worker_peak_rss_mb()
        stop_at = time.monotonic() + duration
        started = time.monotonic()
        workers = [Client(fleet.base, fresh[i::clients], stop_at) for i in range(clients)]
        sampler = RssSampler(fleet, workers, stop_at)
        for client in workers:
            client.start()
        sampler.start()
        for client in workers:
            client.join(duration + 400)
        elapsed = time.monotonic() - started
        sampler.join(30)
        rss_end = fleet.worker_rss_mb()
        rss_main = fleet.main_process_rss_mb()
        peak_end = fleet.worker_peak_rss_mb()
    latencies = [x for c in workers for x in c.latencies]
    errors = [e for c in [*warm, *workers] for e in c.errors] + hostile_errors
    total_requests = sum(c.requests for c in workers)

    peak = max(max(rss) for _, _, rss in sampler.samples + [(0, 0, rss_end)])
    within = peak <= RSS_BOUND_MB and max(peak_end) <= PEAK_RSS_BOUND_MB

    def mb(values: list[float]) -> str:
        return " / ".join(f"{x:.0f}" for x in values)

    rows = [[clients, WORKERS, round(elapsed, 1), total_requests, round(total_requests / elapsed, 2),
             len(latencies), round(len(latencies) / elapsed, 3),
             round(_percentile(latencies, 0.5), 2), round(_percentile(latencies, 0.95), 2),
             round(_percentile(latencies, 0.99), 2), len(errors),
             mb(rss_loaded), mb(rss_start), f"{mb(rss_hostile)} (peak {mb(peak_hostile)})", mb(rss_end),
             round(peak), RSS_BOUND_MB, mb(peak_end), PEAK_RSS_BOUND_MB, "yes" if within else "NO"]]
    notes = (f"{clients} closed-loop clients for {duration} s on loopback against Redis + {WORKERS} "
             "Celery workers (vision+text+index, concurrency 1 each) + the gunicorn gateway "
             "(2 x 4 threads); every request a different OSIE photo, result cache off. Latency: from "
             "POST analyze to the job read as done (includes 0.25 s polling). Requests/s counts "
             "every HTTP request (analyze + polls). RSS: each worker's main + pool process, MB, "
             "once its models are loaded (background warm-up), after its first photos, and at the end "
             f"(of which the Celery main process: {mb(rss_main)}); peak: the largest sample of any "
             "worker during the run; VmHWM: each worker's processes' own peak RSS, summed, at the "
             "end (pool processes replaced by recycling are not counted). Before the run, "
             "one client sends the hostile inputs once: the tests' malformed-file corpus, thin "
             "strips through every stage (20000x20, 20x20000, 6000x40; 24000x20 is refused) and "
             "a 48 MP photo; 4xx refusals are expected, 5xx or failed jobs count as errors.")
    if errors:
        notes += f" First errors: {errors[:3]}"
    title = (f"Load: {clients} clients x {duration} s against the fleet shape (bench_load)" if not ctx.quick
             else "Load (quick smoke run)")
    tables = [Table(title, ["clients", "workers", "seconds", "HTTP requests", "requests/s", "analyses",
                            "analyses/s", "p50 s", "p95 s", "p99 s", "errors", "worker RSS models loaded MB",
                            "worker RSS after first photos MB", "worker RSS after hostile inputs MB",
                            "worker RSS end MB",
                            "peak worker RSS MB", "bound MB", "worker VmHWM MB", "VmHWM bound MB",
                            "within bounds"], rows, notes)]
    tables.append(memory_table(sampler.samples, rss_start))
    return tables


def memory_table(samples: list[tuple[float, int, list[float]]], rss_start: list[float]) -> Table:
    """The RSS curve, every ~30 s, and the growth in each third of the run (levelling off shows
    as the last third growing much less than the first)."""
    if not samples:
        return Table("Worker memory over the run", ["note"], [["no samples"]])
    step = max(1, round(30 / SAMPLE_EVERY_S))
    picked = samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else [])
    rows = [[round(t), done, *[round(x) for x in rss], round(max(x - s for x, s in zip(rss, rss_start, strict=True)))]
            for t, done, rss in picked]
    thirds = [samples[0], samples[len(samples) // 3], samples[2 * len(samples) // 3], samples[-1]]
    growth = [max(b[2][w] - a[2][w] for w in range(len(a[2]))) for a, b in zip(thirds, thirds[1:], strict=False)]
    notes = ("RSS of each worker (main + pool process), MB, sampled every "
             f"{SAMPLE_EVERY_S} s; last column: the largest growth of any worker since the first photos. "
             "Growth of the worst worker in each third of the run: "
             + ", ".join(f"{g:+.0f} MB" for g in growth) + ".")
    columns = ["seconds", "analyses so far", *[f"worker {i} MB" for i in range(len(rss_start))], "max growth MB"]
    return Table("Worker memory over the run (bench_load)", columns, rows, notes)

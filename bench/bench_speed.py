"""Speed on two cores, as ratios to a fixed reference workload measured in the same run (issue 19).

Reference R: 5 EfficientNet-Lite2 crops at 260 px through torch eager on 1 thread (what the embed
stage of one photo cost before ONNX Runtime). Every figure below is also given as a multiple of R,
because the machine is shared and absolute milliseconds move from run to run.

Rows "before" run the code of BENCH_SPEED_BEFORE_REF (default aebc536, the commit before this
work; extracted with `git archive`, so nothing of this checkout changes; empty, or a clone
without that commit, skips them: its torch catalog build alone takes ~5 min), rows "after" this
checkout, one after the other in the same run, against the same photos, each with a demo catalog it
built itself. Through the embedded server's HTTP API (`lens serve --embedded`, subprocesses on
loopback; multipart upload; result cache off):
- cold start: process start to the first 200 from /healthz;
- catalog build: `lens demo-catalog` (421 Tux Paint stamps), images/s over the whole command;
- warm latency per photo, one client: regions + matches (text off) and with text; p50/p95 and
  per-stage p50/p95 from the results' timings_ms;
- photos/s at saturation: SATURATION_CLIENTS clients in closed loops, regions + text.
Plus the CNN work per photo (GFLOP: detector + Lite2 x the crops actually embedded) against the
measured peak of a float32 matmul on 1 core, and the OCR's cost at each detection size
(in-process; the text branch at 960 px also through the API, beside the default).
Photos: OSIE, every 35th (speed only; no quality is measured here).
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from bench import OSIE_DIR, REPO_ROOT, BenchContext, Table

BEFORE_REF = os.environ.get("BENCH_SPEED_BEFORE_REF", "aebc536")
PHOTO_STEP = 35
SATURATION_CLIENTS = 4
REGION_STAGES = ("detect", "saliency", "segments", "select", "embed", "search", "rerank", "regions_total", "overhead")
TEXT_STAGES = ("ocr", "langid", "translate", "text_total", "overhead")
# Targets of issue 19, as multiples of R, through the embedded server's API.
TARGET_REGIONS = 0.45
TARGET_TEXT = 1.1
TARGET_CATALOG_IMG_S = 15.0
TARGET_COLD_START_S = 10.0
# OCR detection sizes measured in-process: (longest side, enlarge smaller photos, by at most),
# the default last.
OCR_CAPPED_ENLARGEMENT = 1.4
OCR_SIZES = ((960, False, None), (1280, True, None), (1600, True, OCR_CAPPED_ENLARGEMENT), (1600, True, None))
OCR_FAST_SIDE = 960


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


# -- the reference workload and the hardware's peak -------------------------------------------
def reference_ms(repeats: int = 7) -> float:
    """R: median ms of 5 Lite2 crops at 260 px, torch eager, 1 thread (real OSIE crops)."""
    import torch

    from lens.config import load_settings
    from lens.embed.efficientnet_lite import EfficientNetLite2Embedder
    from lens.image import load_image_file

    torch.set_num_threads(1)
    photos = sorted((OSIE_DIR / "stimuli").glob("*.jpg"))[:5]
    crops = [load_image_file(p).rgb[40:440, 60:560] for p in photos]
    embedder = EfficientNetLite2Embedder(load_settings(embed={"backend": "efficientnet-lite2"}))
    embedder.embed(crops)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        embedder.embed(crops)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def peak_matmul_gflops(n: int = 1024, repeats: int = 5) -> float:
    """GFLOP/s of a float32 n x n matmul on 1 thread (2 n^3 FLOP), the best of `repeats`."""
    import torch

    torch.set_num_threads(1)
    a, b = torch.rand(n, n), torch.rand(n, n)
    torch.mm(a, b)
    best = min(_timed(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def lite2_gflop(size: int = 260) -> float:
    """FLOP (2 x multiply-adds) of Lite2's feature extractor for one crop."""
    import torch
    from efficientnet_lite_pytorch import EfficientNet
    from torch.utils.flop_counter import FlopCounterMode

    net = EfficientNet.from_name("efficientnet-lite2").eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net.extract_features(torch.zeros(1, 3, size, size))
    return counter.get_total_flops() / 1e9


def default_detector() -> str:
    from lens.config import Settings

    return Settings().detect.backend


def ssd_gflop() -> float:
    """FLOP of the default detector (SSD-MobileNet-v2, 300 x 300): its convolutions, counted from
    each one's kernel and output shape (2 x multiply-adds; OpenCV's getFLOPS is not callable from
    Python in this build)."""
    import cv2
    import numpy as np

    from lens.config import load_settings
    from lens.detect.opencv_ssd import GRAPH_TEXT, INPUT_SIZE, MODEL
    from lens.models import require

    weights = require(MODEL, load_settings())
    # The classic engine can return the outputs of named inner layers.
    net = cv2.dnn.readNetFromTensorflow(str(weights), str(weights.parent / GRAPH_TEXT), engine=cv2.dnn.ENGINE_CLASSIC)
    convs = [name for name in net.getLayerNames()
             if net.getLayer(net.getLayerId(name)).type == "Convolution"]
    net.setInput(np.zeros((1, 3, INPUT_SIZE, INPUT_SIZE), dtype=np.float32))
    outputs = net.forward(convs)
    flop = 0
    for name, out in zip(convs, outputs, strict=True):
        kernel = net.getLayer(net.getLayerId(name)).blobs[0].shape  # (out, in / groups, kh, kw)
        flop += 2 * out.size * int(np.prod(kernel[1:]))
    return flop / 1e9


def ocr_ms_by_size(photos: list[Path]) -> dict[tuple[int, bool, float | None], tuple[float, float, float]]:
    """(p50 ms, p95 ms, lines read p50) of OCR per photo at each detection size, in-process, 1
    thread, the sizes taking turns photo by photo (so that load from other processes hits all)."""
    from lens.config import load_settings
    from lens.image import load_image_file
    from lens.ocr import create_ocr
    from lens.threads import apply_thread_policy

    apply_thread_policy(1)
    readers = {size: create_ocr(load_settings(ocr={"det_max_side": size[0], "det_upscale": size[1],
                                                   "det_max_enlargement": size[2]}))
               for size in OCR_SIZES}
    images = [load_image_file(p).rgb for p in photos]
    for reader in readers.values():
        reader.read(images[0])  # warm
    ms: dict[tuple[int, bool, float | None], list[float]] = {size: [] for size in OCR_SIZES}
    lines: dict[tuple[int, bool, float | None], list[int]] = {size: [] for size in OCR_SIZES}
    for rgb in images:
        for size, reader in readers.items():
            start = time.perf_counter()
            found = reader.read(rgb)
            ms[size].append((time.perf_counter() - start) * 1e3)
            lines[size].append(len(found))
    return {size: (percentile(ms[size], 50), percentile(ms[size], 95), statistics.median(lines[size]))
            for size in OCR_SIZES}


# -- servers under test ------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def extract_before_tree(work: Path) -> Path | None:
    """The code of BEFORE_REF in `work`, or None when this checkout does not have that commit."""
    dest = work / f"before-{BEFORE_REF}"
    if (dest / "lens").is_dir():
        return dest
    archive = subprocess.run(["git", "-C", str(REPO_ROOT), "archive", "--format=tar", BEFORE_REF],
                             capture_output=True)
    if archive.returncode != 0:
        return None
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile() as fh:
        fh.write(archive.stdout)
        fh.seek(0)
        with tarfile.open(fileobj=fh) as tar:
            tar.extractall(dest, filter="data")
    return dest


class Tree:
    """One version of the code and its own data dir (catalog, uploads)."""

    def __init__(self, label: str, root: Path, data_dir: Path, settings: dict[str, str] | None = None,
                 build: bool = True, saturation: bool = True) -> None:
        self.label, self.root, self.data_dir = label, root, data_dir
        self.settings, self.build, self.saturation = settings or {}, build, saturation

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LENS_")}
        env.update(PYTHONPATH=str(self.root), PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS="1",
                   LENS_DATA_DIR=str(self.data_dir), LENS_MODELS_DIR=str(REPO_ROOT / "var" / "models"),
                   LENS_SERVER__RESULT_CACHE_TTL_S="0", LENS_SERVER__RATE_LIMIT_PER_MINUTE="0",
                   **self.settings)
        return env

    def lens(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "lens.cli", *args], cwd=self.root, env=self.env(),
                              capture_output=True, text=True, timeout=timeout)

    def build_catalog(self) -> tuple[int, float]:
        """(items added, seconds) for `lens demo-catalog` from scratch."""
        start = time.perf_counter()
        out = self.lens("demo-catalog")
        took = time.perf_counter() - start
        if out.returncode != 0:
            raise RuntimeError(f"{self.label}: demo-catalog failed: {out.stderr[-2000:]}")
        added = next(int(line.split()[1].rstrip(",")) for line in out.stdout.splitlines() if line.startswith("added "))
        return added, took


class Server:
    def __init__(self, tree: Tree) -> None:
        self.tree, self.port = tree, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tree.data_dir / "server.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> float:
        """Start it; seconds until /healthz answered 200."""
        self.tree.data_dir.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lens.cli", "serve", "--embedded", "--port", str(self.port)],
            cwd=self.tree.root, env=self.tree.env(), stdout=self.log.open("wb"), stderr=subprocess.STDOUT)
        deadline = start + 120
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.tree.label} server exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:
                    if response.status == 200:
                        return time.perf_counter() - start
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.tree.label} server: no /healthz within 120 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def analyze(self, photo: Path, text: bool) -> tuple[float, dict]:
        """(client-side ms, result) for one photo; embedded mode answers with the result."""
        boundary = uuid.uuid4().hex
        body = b"".join([
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\n{str(text).lower()}\r\n".encode(),
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{photo.name}\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n".encode(), photo.read_bytes(), f"\r\n--{boundary}--\r\n".encode()])
        request = urllib.request.Request(f"{self.url}/api/v1/analyze", data=body, method="POST",
                                         headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        start = time.perf_counter()
        with urllib.request.urlopen(request, timeout=600) as response:
            payload = json.loads(response.read())
        ms = (time.perf_counter() - start) * 1e3
        while payload.get("status") in ("queued", "running"):  # not expected embedded; be safe
            time.sleep(0.05)
            with urllib.request.urlopen(f"{self.url}{payload['status_url']}", timeout=60) as response:
                payload = json.loads(response.read())
            ms = (time.perf_counter() - start) * 1e3
        if payload.get("status") != "done":
            raise RuntimeError(f"{self.tree.label}: {photo.name}: {payload}")
        return ms, payload["result"]


def measure_latency(server: Server, photos: list[Path], text: bool) -> tuple[list[float], dict[str, list[float]], list[int]]:
    totals, stages, crops = [], {}, []
    for photo in photos:
        ms, result = server.analyze(photo, text)
        totals.append(ms)
        timings = result.get("timings_ms", {})
        for name, value in timings.items():
            stages.setdefault(name, []).append(float(value))
        # What the request cost beyond its branches' compute: HTTP, decode, upload storage, job
        # bookkeeping, JSON (and, before, the text branch waiting for the regions branch).
        branches = [timings[k] for k in ("regions_total", "text_total") if k in timings]
        stages.setdefault("overhead", []).append(ms - (max(branches) if branches else 0.0))
        crops.append(len(result.get("regions", [])))
    return totals, stages, crops


def measure_saturation(server: Server, photos: list[Path], clients: int) -> float:
    """Photos/s with `clients` closed loops sharing the photo list (regions + text)."""
    queue = list(photos) * 2
    lock = threading.Lock()
    errors: list[str] = []

    def client() -> None:
        while True:
            with lock:
                if not queue:
                    return
                photo = queue.pop()
            try:
                server.analyze(photo, text=True)
            except Exception as exc:  # report, do not hang the bench
                errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{server.tree.label}: saturation errors: {errors[:3]}")
    return len(photos) * 2 / took


def run_tree(tree: Tree, photos: list[Path], warm: list[Path], quick: bool) -> dict:
    added, build_s = tree.build_catalog() if tree.build else (0, float("nan"))
    server = Server(tree)
    try:
        cold_s = server.start()
        for photo in warm:
            server.analyze(photo, text=True)
        regions = measure_latency(server, photos, text=False)
        text = measure_latency(server, photos, text=True)
        saturation = measure_saturation(server, photos[: 4 if quick else len(photos)], SATURATION_CLIENTS) \
            if tree.saturation else float("nan")
    finally:
        server.stop()
    return {"catalog_items": added, "catalog_s": build_s, "cold_s": cold_s, "regions": regions,
            "text": text, "saturation": saturation}


# -- the report --------------------------------------------------------------------------------
def run(ctx: BenchContext) -> list[Table]:

    photos_all = sorted((OSIE_DIR / "stimuli").glob("*.jpg"))
    photos = photos_all[:: PHOTO_STEP][: 4 if ctx.quick else 20]
    warm = photos_all[1:3]
    ref = reference_ms()
    peak = peak_matmul_gflops()
    work = ctx.work_dir / "speed"
    if work.exists():
        import shutil

        shutil.rmtree(work)
    work.mkdir(parents=True)
    trees = []
    before_root = extract_before_tree(work)
    if before_root is not None:
        trees.append(Tree(f"before ({BEFORE_REF})", before_root, work / "data-before"))
    trees.append(Tree("after", REPO_ROOT, work / "data-after"))
    # The same SSD graph in OpenCV DNN (the default before openvino-ssd), on the same catalog.
    # (YOLOv3-tiny, detect=ultralytics: 0.43 x R in bench/RESULTS.md's round 2, fewer dots found.)
    trees.append(Tree("after, detect=opencv-ssd", REPO_ROOT, work / "data-after",
                      {"LENS_DETECT__BACKEND": "opencv-ssd"}, build=False, saturation=False))
    # The text branch with OCR detection at 960 px, not enlarged (issue 16 owns the choice of
    # size; lens/config.py OcrConfig.det_max_side gives its word F at each size).
    trees.append(Tree(f"after, ocr {OCR_FAST_SIDE} px", REPO_ROOT, work / "data-after",
                      {"LENS_OCR__DET_MAX_SIDE": str(OCR_FAST_SIDE), "LENS_OCR__DET_UPSCALE": "false"},
                      build=False, saturation=False))
    # The text detector in float32 where "auto" picks bfloat16, and smaller photos enlarged
    # 1.4x at most (OcrConfig.det_max_enlargement: what each costs in words read).
    trees.append(Tree("after, ocr det f32", REPO_ROOT, work / "data-after", {"LENS_OCR__DET_PRECISION": "f32"},
                      build=False, saturation=False))
    trees.append(Tree(f"after, ocr enlargement <= {OCR_CAPPED_ENLARGEMENT}x", REPO_ROOT, work / "data-after",
                      {"LENS_OCR__DET_MAX_ENLARGEMENT": str(OCR_CAPPED_ENLARGEMENT)}, build=False, saturation=False))
    results = {tree.label: run_tree(tree, photos, warm, ctx.quick) for tree in trees}
    ocr_sizes = ocr_ms_by_size(photos[: 4 if ctx.quick else 10])
    ref_end = reference_ms()  # again, to show how much the machine drifted during the run
    ref = statistics.median([ref, ref_end])

    def ratio(ms: float) -> float:
        return round(ms / ref, 2)

    summary_rows = []
    for label, r in results.items():
        reg, txt = r["regions"][0], r["text"][0]
        summary_rows.append([
            label, round(percentile(reg, 50)), ratio(percentile(reg, 50)), round(percentile(reg, 95)),
            round(percentile(txt, 50)), ratio(percentile(txt, 50)), round(percentile(txt, 95)),
            round(r["saturation"], 2) if r["saturation"] == r["saturation"] else "-",
            round(r["catalog_items"] / r["catalog_s"], 1) if r["catalog_items"] else "(same catalog)",
            round(r["cold_s"], 1)])
    summary = Table(
        f"Through the embedded server's API, warm, 1 client; reference R = {ref:.0f} ms",
        ["code", "regions+matches p50 ms", "x R", "p95 ms", "with text p50 ms", "x R", "p95 ms",
         f"photos/s, {SATURATION_CLIENTS} clients", "catalog build img/s", "cold start s"],
        summary_rows,
        notes=(f"R = 5 Lite2 crops at 260 px, torch eager, 1 thread, median of 7, measured at the start "
               f"and end of this run ({ref:.0f} ms; end/start = {ref_end / max(ref, 1e-9):.2f}, the "
               f"machine's drift). Targets: regions+matches <= {TARGET_REGIONS} x R, with text <= "
               f"{TARGET_TEXT} x R, catalog build >= {TARGET_CATALOG_IMG_S:g} img/s, cold start <= "
               f"{TARGET_COLD_START_S:g} s. {len(photos)} OSIE photos (every {PHOTO_STEP}th); result "
               "cache off; each code version with the demo catalog it built itself "
               f"({', '.join(str(r['catalog_items']) for r in results.values() if r['catalog_items'])} items). "
               f"Default detector: {default_detector()} (SSD-MobileNet-v2)."),
    )
    stage_rows = []
    for label, r in results.items():
        for branch, names in (("regions", REGION_STAGES), ("text", TEXT_STAGES)):
            stages = r[branch][1]
            for name in names:
                if name in stages:
                    p50, p95 = percentile(stages[name], 50), percentile(stages[name], 95)
                    stage_rows.append([label, branch, name, round(p50, 1), ratio(p50), round(p95, 1), ratio(p95)])
    stages_table = Table(
        "Stages (server-side timings_ms), warm, 1 client",
        ["code", "request", "stage", "p50 ms", "x R", "p95 ms", "x R"], stage_rows,
        notes="'regions' requests have text off; 'text' requests run both branches, so their stages "
              "share the 2 cores with the regions branch. overhead = client-side ms minus the longer "
              "branch (HTTP, decode, storage, job bookkeeping, and any wait of one branch for the other).")
    after = results["after"]
    crops = statistics.mean(after["regions"][2]) if after["regions"][2] else 0.0
    lite2 = lite2_gflop()
    detector = ssd_gflop()
    per_photo = detector + crops * lite2
    detect_embed_ms = percentile(after["regions"][1].get("detect", []), 50) + \
        percentile(after["regions"][1].get("embed", []), 50)
    compute = Table(
        "CNN work per photo against the hardware (after)",
        ["what", "value"],
        [["peak float32 matmul, 1 thread, GFLOP/s", round(peak, 1)],
         ["Lite2 GFLOP per crop (260 px)", round(lite2, 2)],
         ["detector GFLOP (SSD-MobileNet-v2, 300 px, OpenCV count)", round(detector, 2)],
         ["crops embedded per photo (mean)", round(crops, 2)],
         ["GFLOP per photo (detector + crops x Lite2)", round(per_photo, 2)],
         ["lower bound at peak, ms", round(per_photo / peak * 1e3, 1)],
         ["measured detect + embed p50, ms", round(detect_embed_ms, 1)],
         ["achieved GFLOP/s on detect + embed", round(per_photo / max(detect_embed_ms, 1e-9) * 1e3, 1)],
         ["R's own rate, GFLOP/s (5 x Lite2 / R)", round(5 * lite2 / ref * 1e3, 1)]],
        notes="FLOP = 2 x multiply-adds. Saliency, region selection and OCR are not counted "
              "(no CNN on the default regions path besides these two).")
    ocr_table = Table(
        "OCR detection size: the text branch's OCR per photo, in-process, 1 thread",
        ["det_max_side", "enlarge smaller photos", "p50 ms", "x R", "p95 ms", "lines read (p50)"],
        [[side, (f"<= {cap}x" if cap else "yes") if upscale else "no", round(p50), ratio(p50), round(p95), lines]
         for (side, upscale, cap), (p50, p95, lines) in ocr_sizes.items()],
        notes=f"The first {min(len(photos), 4 if ctx.quick else 10)} photos above; the sizes take turns photo by "
              "photo. Word F on ICDAR 2015 at each size: lens/config.py OcrConfig.det_max_side (issue 16 "
              "chooses the size; the text target <= 1.1 x R needs OCR well under R, beside the regions branch).")
    return [summary, stages_table, compute, ocr_table]

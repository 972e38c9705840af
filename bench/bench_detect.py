"""Which detector is the better default, and what detection + selection cost per photo.

Quality on real labelled photos, two sets (no COCO val set on these machines):
- ultralytics' bus.jpg and zidane.jpg with hand-drawn boxes (7 objects: 6 people, 1 bus);
- tux stamps (Debian tuxpaint-stamps-default, real photo cut-outs) pasted at random off-centre
  spots onto OSIE photos: the pasted box is the label. Most stamps are not COCO classes, so this
  measures class-agnostic recall and, more to the point for the product, whether the pasted
  item becomes the top-1 / a top-3 region after select_regions.
Speed on OSIE photos: detection and selection per photo, median and p95, one thread.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PIL import Image

from bench import OSIE_DIR, BenchContext, Table, paste_off_centre, single_thread

BACKENDS = ("ultralytics", "opencv-ssd", "fusion")
STAMPS = Path("/usr/share/tuxpaint/stamps")
HAND_LABELS = {
    "bus.jpg": [("person", (50, 395, 245, 910)), ("person", (215, 400, 350, 865)), ("person", (670, 375, 810, 880)),
                ("person", (0, 540, 80, 875)), ("bus", (0, 230, 810, 790))],
    "zidane.jpg": [("person", (120, 195, 1110, 715)), ("person", (740, 40, 1150, 715))],
}  # fmt: skip


def _detectors(ctx: BenchContext):
    from lens.config import REPO_ROOT, load_settings
    from lens.detect import create_detector

    out = {}
    for backend in BACKENDS:
        settings = load_settings(data_dir=ctx.work_dir / "data", models_dir=REPO_ROOT / "var" / "models",
                                 detect={"backend": backend})
        out[backend] = (settings, create_detector(settings))
    return out


def _pasted_photos(count: int, seed: int = 0):
    """(rgb, box) pairs: a stamp scaled to 15-35% of the photo width, pasted off-centre."""
    rng = np.random.default_rng(seed)
    stamps = sorted(STAMPS.rglob("*.png"))
    backgrounds = sorted((OSIE_DIR / "stimuli").glob("*.jpg"))
    for _ in range(count):
        stamp = Image.open(stamps[rng.integers(len(stamps))]).convert("RGBA")
        bg = Image.open(backgrounds[rng.integers(len(backgrounds))]).convert("RGB")
        bg, box = paste_off_centre(bg, stamp, rng)
        yield np.asarray(bg), box


def quality_tables(ctx: BenchContext, detectors) -> list[Table]:
    import importlib.util

    from lens.geometry import iou
    from lens.saliency import create_saliency, select_regions

    assets = Path(next(iter(importlib.util.find_spec("ultralytics").submodule_search_locations))) / "assets"
    rows = []
    for backend, (_, detector) in detectors.items():
        found = total = false_pos = 0
        for name, labels in HAND_LABELS.items():
            dets = detector.detect(np.asarray(Image.open(assets / name).convert("RGB")))
            matched = set()
            for label, box in labels:
                total += 1
                hits = [i for i, d in enumerate(dets) if d.label == label and iou(d.box, box) >= 0.5 and i not in matched]
                if hits:
                    found += 1
                    matched.add(hits[0])
            false_pos += len(dets) - len(matched)
        rows.append([backend, f"{found}/{total}", false_pos])
    hand = Table(
        title="Detection on hand-labelled photos (bus.jpg, zidane.jpg)",
        columns=["backend", "found (IoU>=0.5, right label)", "other boxes"],
        rows=rows,
        notes=("'other boxes': detections matching no label (duplicates, ties, false alarms) at the configured "
               f"confidence {next(iter(detectors.values()))[0].detect.confidence}."),
    )

    count = 12 if ctx.quick else 80
    pasted = list(_pasted_photos(count))
    rows = []
    for backend, (settings, detector) in detectors.items():
        saliency = create_saliency(settings)
        recall = top1 = top3 = 0
        for rgb, box in pasted:
            dets = detector.detect(rgb)
            recall += any(iou(d.box, box) >= 0.5 for d in dets)
            regions = select_regions(rgb, dets, saliency.map(rgb), settings.regions)
            hits = [iou(r.box, box) >= 0.5 for r in regions]
            top1 += bool(hits[:1] and hits[0])
            top3 += any(hits[:3])
        rows.append([backend, count, recall / count, top1 / count, top3 / count])
    stamps = Table(
        title="Tux stamps pasted off-centre onto OSIE photos",
        columns=["backend", "photos", "any box IoU>=0.5", "top-1 region IoU>=0.5", "in top-3 regions"],
        rows=rows,
        notes=("Stamp 15-35% of the photo width, centre outside the middle 40% box; seed 0. "
               "Regions from select_regions with the default saliency map, so a salient blob can "
               "win where the detector has no class for the stamp."),
    )
    return [hand, stamps]


def speed_table(ctx: BenchContext, detectors) -> Table:
    from lens.saliency import create_saliency, select_regions

    photos = sorted((OSIE_DIR / "stimuli").glob("*.jpg"))[:: 70 if ctx.quick else 23][: 10 if ctx.quick else 30]
    images = [np.asarray(Image.open(p).convert("RGB")) for p in photos]
    rows = []
    for backend, (settings, detector) in detectors.items():
        saliency = create_saliency(settings)
        detector.detect(images[0])  # warm-up
        detect_ms, select_ms = [], []
        for rgb in images:
            t0 = time.perf_counter()
            dets = detector.detect(rgb)
            t1 = time.perf_counter()
            select_regions(rgb, dets, saliency.map(rgb), settings.regions)
            t2 = time.perf_counter()
            detect_ms.append((t1 - t0) * 1e3)
            select_ms.append((t2 - t1) * 1e3)
        rows.append([backend, len(images), float(np.median(detect_ms)), float(np.percentile(detect_ms, 95)),
                     float(np.median(select_ms)), float(np.percentile(select_ms, 95))])
    return Table(
        title="Detection and selection per photo (OSIE 800x600, 1 thread)",
        columns=["backend", "photos", "detect median ms", "detect p95 ms", "saliency+select median ms", "saliency+select p95 ms"],
        rows=rows,
        notes="torch, OpenCV and onnxruntime intra-op threads limited to 1, as for one Celery child on a 2-core worker.",
    )


def run(ctx: BenchContext) -> list[Table]:
    single_thread()
    detectors = _detectors(ctx)
    return [*quality_tables(ctx, detectors), speed_table(ctx, detectors)]

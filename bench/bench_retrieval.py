"""Retrieval quality on real images.

1. Same-class retrieval, leave-one-out, over Debian's Tux Paint photo stamps (classes with at
   least 5 stamps): recall@1, recall@5 (a same-class item in the top k) and mAP, per embedder,
   with a colour-histogram baseline; plus embedding ms per crop.
2. Crop vs whole photo: stamps pasted at random off-centre spots onto OSIE photos, searched
   through lens.pipeline.Pipeline with the whole photo as the query vs the selected regions
   (find_regions -> search_boxes), against a catalog of all the stamps. Reported: recall@5 of
   the pasted stamp's class and of the exact stamp; the pasted box itself is the upper bound.
3. Where the regions land: the same kind of pasted stamps, more photos, no embedding: how often
   the top-1 / top-3 / any selected region matches the pasted box (IoU >= 0.5), and how long
   select_regions takes.
Photos: only OSIE photos RegionConfig was not tuned on (bench_saliency.tuned_on).
"""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
from PIL import Image

from bench import OSIE_DIR, REPO_ROOT, BenchContext, Table

MIN_CLASS_SIZE = 5


class MemoisedEmbedder:
    """A real embedder that remembers vectors of crops it has seen (the catalog build re-embeds
    the stamps the leave-one-out run already embedded)."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.version, self.dim = inner, inner.name, inner.version, inner.dim
        self.memo: dict[bytes, np.ndarray] = {}

    def embed(self, crops):
        keys = [c.tobytes() + str(c.shape).encode() for c in crops]
        todo = [(k, c) for k, c in zip(keys, crops, strict=True) if k not in self.memo]
        if todo:
            for (k, _), v in zip(todo, self.inner.embed([c for _, c in todo]), strict=True):
                self.memo[k] = v
        return np.stack([self.memo[k] for k in keys]) if keys else self.inner.embed([])


def bench_stamps():
    from lens.index.demo import tux_stamps

    stamps = tux_stamps()
    sizes = Counter(s.label for s in stamps)
    return [s for s in stamps if sizes[s.label] >= MIN_CLASS_SIZE]


def leave_one_out(vectors: np.ndarray, labels: np.ndarray) -> tuple[float, float, float]:
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    order = np.argsort(-sims, axis=1)[:, :-1]
    relevant = labels[order] == labels[:, None]
    r1 = float(relevant[:, 0].mean())
    r5 = float(relevant[:, :5].any(axis=1).mean())
    precision = np.cumsum(relevant, axis=1) / np.arange(1, relevant.shape[1] + 1)
    ap = (precision * relevant).sum(axis=1) / np.maximum(relevant.sum(axis=1), 1)
    return r1, r5, float(ap.mean())


def colour_histograms(images: list[np.ndarray]) -> np.ndarray:
    rows = []
    for rgb in images:
        non_white = rgb[(rgb < 245).any(axis=2)]
        pixels = non_white if len(non_white) else rgb.reshape(-1, 3)
        hist, _ = np.histogramdd(pixels, bins=(8, 8, 8), range=((0, 256),) * 3)
        rows.append(np.sqrt(hist.ravel()))
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def paste(photo: np.ndarray, stamp: Image.Image, rng: np.random.Generator) -> tuple[np.ndarray, tuple]:
    """The stamp (RGBA cut-out) pasted off-centre on the photo; returns (image, box)."""
    h, w = photo.shape[:2]
    side = rng.uniform(0.2, 0.35) * min(h, w)
    scale = side / max(stamp.size)
    sw, sh = max(8, round(stamp.width * scale)), max(8, round(stamp.height * scale))
    cutout = stamp.resize((sw, sh), Image.Resampling.LANCZOS)
    while True:
        x, y = int(rng.integers(0, w - sw)), int(rng.integers(0, h - sh))
        # Off-centre: the stamp's centre at least 20% of the width from the photo's centre.
        if abs(x + sw / 2 - w / 2) > 0.2 * w or abs(y + sh / 2 - h / 2) > 0.2 * h:
            break
    canvas = Image.fromarray(photo).convert("RGBA")
    canvas.alpha_composite(cutout, (x, y))
    return np.asarray(canvas.convert("RGB")), (float(x), float(y), float(x + sw), float(y + sh))


def run(ctx: BenchContext) -> list[Table]:
    import tempfile

    import torch

    from lens.config import load_settings
    from lens.embed import create_embedder
    from lens.image import load_image_file

    torch.set_num_threads(1)
    stamps = bench_stamps()
    images = [load_image_file(s.path).rgb for s in stamps]
    labels = np.array([s.label for s in stamps])
    rows = []
    embedders = {}
    for backend in ("efficientnet-lite2", "mobilenetv2"):
        embedder = MemoisedEmbedder(create_embedder(load_settings(embed={"backend": backend})))
        start = time.perf_counter()
        vectors = embedder.embed(images)
        ms = (time.perf_counter() - start) * 1e3 / len(images)
        rows.append([backend, *(round(v, 3) for v in leave_one_out(vectors, labels)), round(ms, 1)])
        embedders[backend] = embedder
    rows.append(["colour histogram (8x8x8)", *(round(v, 3) for v in leave_one_out(colour_histograms(images), labels)), "-"])
    quality = Table(
        f"Same-class retrieval, leave-one-out: {len(stamps)} Tux Paint photo stamps, "
        f"{len(set(labels))} classes (>= {MIN_CLASS_SIZE} each)",
        ["embedder", "recall@1", "recall@5", "mAP", "embed ms/crop (1 thread)"],
        rows,
        notes="Class = the stamp's folder, two levels deep (e.g. animals/birds). Stamps: PNGs without "
        "an SVG twin, no _mirror copies, no symbols/ or cartoon/ folders (lens.index.demo).",
    )
    return [quality, crop_vs_whole(ctx, stamps, embedders["efficientnet-lite2"], tempfile), where_regions_land(ctx, stamps)]


def held_out_photos() -> list:
    from bench.bench_saliency import tuned_on

    return [p for p in sorted((OSIE_DIR / "stimuli").glob("*.jpg")) if not tuned_on(p.stem)]


def where_regions_land(ctx: BenchContext, stamps) -> Table:
    import cv2

    from lens.config import load_settings
    from lens.detect import create_detector
    from lens.geometry import iou
    from lens.saliency import create_saliency, select_regions

    photos = held_out_photos()
    if not photos:
        return Table("Where the regions land", ["note"], [[f"OSIE photos not found in {OSIE_DIR}"]])
    cv2.setNumThreads(1)
    trials = 20 if ctx.quick else 150
    rng = np.random.default_rng(1)
    settings = load_settings(data_dir=ctx.work_dir / "data", models_dir=REPO_ROOT / "var" / "models")
    detector, saliency = create_detector(settings), create_saliency(settings)
    found = np.zeros((trials, 3), dtype=bool)
    best_iou, counts, select_ms = [], [], []
    for trial in range(trials):
        stamp = stamps[int(rng.integers(len(stamps)))]
        photo = np.asarray(Image.open(photos[int(rng.integers(len(photos)))]).convert("RGB"))
        composite, box = paste(photo, Image.open(stamp.path).convert("RGBA"), rng)
        detections, sal_map = detector.detect(composite), saliency.map(composite)
        start = time.perf_counter()
        regions = select_regions(composite, detections, sal_map, settings.regions)
        select_ms.append((time.perf_counter() - start) * 1e3)
        ious = [iou(r.box, box) for r in regions]
        found[trial] = [bool(ious) and ious[0] >= 0.5, any(i >= 0.5 for i in ious[:3]), any(i >= 0.5 for i in ious)]
        best_iou.append(max(ious, default=0.0))
        counts.append(len(regions))
    return Table(
        f"Where the regions land: {trials} stamps pasted off-centre on held-out OSIE photos",
        ["photos", "top-1 region IoU>=0.5", "top-3 IoU>=0.5", "any region IoU>=0.5", "mean best IoU",
         "regions per photo", "select median ms", "select p95 ms"],
        [[trials, *(float(v) for v in found.mean(axis=0)), float(np.mean(best_iou)), float(np.mean(counts)),
          float(np.median(select_ms)), float(np.percentile(select_ms, 95))]],
        notes=f"Detector {settings.detect.backend}, saliency {settings.saliency.backend}, default RegionConfig; "
        "seed 1, so other photos and stamps than the retrieval table above. select_regions time only "
        "(detection and the saliency map excluded), 1 OpenCV thread.",
    )


def crop_vs_whole(ctx: BenchContext, stamps, embedder, tempfile) -> Table:
    from lens.config import load_settings
    from lens.image import DecodedImage
    from lens.index import open_catalog
    from lens.index.catalog import NewItem
    from lens.pipeline import AnalyzeOptions, Pipeline, Timer

    photos = held_out_photos()
    if not photos:
        return Table("Crop vs whole photo", ["note"], [[f"OSIE photos not found in {OSIE_DIR}"]])
    trials = 8 if ctx.quick else 60
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(dir=ctx.work_dir) as tmp:
        settings = load_settings(data_dir=tmp, models_dir=REPO_ROOT / "var" / "models")
        catalog = open_catalog(settings, embedder, create=True)
        outcomes = catalog.add_images([NewItem(s.path, title=s.title, extra={"class": s.label}) for s in stamps])
        catalog.save()
        catalog.close()
        item_of = {o.source: o.item_id for o in outcomes}
        pipeline = Pipeline(settings)
        pipeline._stages["embed"] = embedder  # the same (memoised) real model
        hits = {"whole photo": [0, 0], "selected regions": [0, 0], "first 3 selected regions": [0, 0],
                "top-1 selected region only": [0, 0], "pasted box (upper bound)": [0, 0]}
        region_counts = []
        for trial in range(trials):
            stamp = stamps[int(rng.integers(len(stamps)))]
            photo = np.asarray(Image.open(photos[int(rng.integers(len(photos)))]).convert("RGB"))
            composite, box = paste(photo, Image.open(stamp.path).convert("RGBA"), rng)
            image = DecodedImage(rgb=composite, sha256=f"trial{trial}", format="JPEG")
            h, w = composite.shape[:2]
            queries = {
                "whole photo": pipeline.search_boxes(image, [(0.0, 0.0, float(w), float(h))], k=5),
                "pasted box (upper bound)": pipeline.search_boxes(image, [box], k=5),
            }
            regions = pipeline.find_regions(image, AnalyzeOptions(text=False, search=False), Timer())
            region_counts.append(len(regions))
            queries["selected regions"] = pipeline.search_boxes(image, [r.box for r in regions], k=5) if regions else [[]]
            queries["first 3 selected regions"] = queries["selected regions"][:3]
            queries["top-1 selected region only"] = queries["selected regions"][:1]
            want_id = item_of[str(stamp.path)]
            for name, per_box in queries.items():
                matches = [m for row in per_box for m in row[:5]]
                hits[name][0] += any(m.metadata.get("class") == stamp.label for m in matches)
                hits[name][1] += any(m.item_id == want_id for m in matches)
    rows = [[name, round(c / trials, 3), round(e / trials, 3)] for name, (c, e) in hits.items()]
    return Table(
        f"Crop vs whole photo: {trials} stamps pasted off-centre on held-out OSIE photos, EfficientNet-Lite2",
        ["query", "class recall@5", "exact item recall@5"],
        rows,
        notes=f"Catalog: the {len(stamps)} stamps. 'selected regions': a hit when any selected region's "
        f"top 5 holds it (the user taps that dot); {np.mean(region_counts):.1f} regions per photo on average "
        "(detector, saliency and select_regions as configured by default). 'first 3' / 'top-1 selected "
        "region only': the first 3 dots' / the first dot's top 5 (compares selections that return "
        "different numbers of dots). Photos: OSIE photos RegionConfig was not tuned on; seed 0.",
    )

"""The dots: are they on what people care about, never on junk, never stacked?

On coco128 (64 real photos with COCO boxes, ../shared/data/coco128), split by sorted index
parity into a tuning half (even) and a report half (odd); RegionConfig and the detector were
chosen on the tuning half only, and both halves are reported:
- main-object recall: of the up-to-3 largest labelled objects covering >= 3% of the photo, the
  share matched by some dot's box at IoU >= 0.5;
- junk rate: the share of dots overlapping no labelled object (IoU < 0.3 with every one, and
  the dot's centre inside none);
- crowded pairs: pairs of dots whose centres are closer than 4% of the photo's diagonal (a
  finger cannot tell them apart).
Then, for the same settings: the share of human fixations inside the top-1 / top-3 dots on the
100 OSIE test photos (the learned map never saw them), and "first dot on the product" on
GroceryStore val photos (no boxes there: the photographer aimed at the product, which fills
much of the frame, so the first dot counts as on it when its box contains the photo's centre).
Each row runs the pipeline's region branch (downscale to limits.work_max_side, detect,
saliency, select_regions) with one set of settings; the first row is the defaults before
issue 15, measured in the same run.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench import SHARED, BenchContext, Table, single_thread
from lens.geometry import box_area, iou, scale_box
from lens.types import Box

COCO_DIR = SHARED / "data" / "coco128"
GROCERY_DIR = SHARED / "data" / "grocery"
MAIN_OBJECTS, MAIN_MIN_AREA, MATCH_IOU = 3, 0.03, 0.5
JUNK_IOU, CROWDED_DIAGONAL = 0.3, 0.04
QUICK_PHOTOS = 16

# RegionConfig as it was before issue 15 (the baseline row); the fields added since are set so
# that they change nothing. (Two fixes in select_regions apply to this row too: segments touching
# two image sides were counted as touching one, and a detection inside another one of a
# different label was dropped as its part; the code before them scored tune 0.574 / 0.359 / 3,
# report 0.606 / 0.321 / 5, OSIE 0.606 / 0.805, grocery 0.697 in bench_dots' first run.)
BEFORE_ISSUE_15: dict = dict(
    weight_confidence=1.0, weight_mass=1.0, weight_mean=0.5, weight_contrast=4.0, weight_size=0.0,
    min_relative_score=0.35, edge_min_area=0.0, min_dot_distance=0.0, whole_min_confidence=1.01,
    detection_duplicate_iou=0.3, detection_keep_confidence=0.5, segment_dithers=0,
)
# The defaults of the first issue-15 round (recall 0.773 on the report half), before a detection
# at >= 0.25 was sure of a dot (0.5 then; the first dot now never gives way to it, here too).
FIRST_ROUND: dict = dict(detection_keep_confidence=0.5, segment_dithers=0)
# The defaults before a colour segment had to survive a +-1 grey-level dither to be a candidate
# (RegionConfig.segment_dithers; camera-size photos changed their dots on it).
EVERY_SEGMENT: dict = dict(segment_dithers=0)
# The best setting for the learned map found by the same search as the defaults (tuning half,
# OSIE-validation constraint); see RegionConfig.
LEARNED_RETUNED: dict = dict(
    weight_confidence=1.0, weight_contrast=0.0, weight_saliency_contrast=0.0, weight_mass=2.0, weight_mean=0.0,
    weight_size=0.0, min_relative_score=0.5, edge_min_area=0.0, detection_keep_confidence=0.5, segment_dithers=0,
)


@dataclass
class LabelledPhoto:
    path: Path
    width: int
    height: int
    boxes: list[Box]  # every labelled object, pixels

    def load_rgb(self) -> np.ndarray:
        from PIL import Image

        return np.asarray(Image.open(self.path).convert("RGB"))


def load_coco128(root: Path = COCO_DIR) -> list[LabelledPhoto]:
    """The photos sorted by name, each with its YOLO boxes in pixels (a photo without a label
    file has no labelled object)."""
    from PIL import Image

    photos = []
    for path in sorted((root / "images").glob("*.jpg")):
        with Image.open(path) as im:
            w, h = im.size
        boxes = []
        label_file = root / "labels" / (path.stem + ".txt")
        if label_file.is_file():
            for line in label_file.read_text().split("\n"):
                if not line.strip():
                    continue
                _cls, cx, cy, bw, bh = (float(v) for v in line.split())
                boxes.append(((cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h))
        photos.append(LabelledPhoto(path, w, h, boxes))
    return photos


def split(photos: list[LabelledPhoto]) -> tuple[list[LabelledPhoto], list[LabelledPhoto]]:
    """(tuning half: even sorted index, report half: odd)."""
    return photos[0::2], photos[1::2]


def main_objects(photo: LabelledPhoto) -> list[Box]:

    area = photo.width * photo.height
    big = [b for b in photo.boxes if box_area(b) >= MAIN_MIN_AREA * area]
    return sorted(big, key=box_area, reverse=True)[:MAIN_OBJECTS]


def crowded_pairs(dots: list[Box], width: int, height: int, fraction: float = CROWDED_DIAGONAL) -> int:
    limit = fraction * float(np.hypot(width, height))
    centres = [((b[0] + b[2]) / 2, (b[1] + b[3]) / 2) for b in dots]
    return sum(
        1
        for i in range(len(centres))
        for j in range(i + 1, len(centres))
        if np.hypot(centres[i][0] - centres[j][0], centres[i][1] - centres[j][1]) < limit
    )


def is_junk(dot: Box, labelled: list[Box]) -> bool:
    cx, cy = (dot[0] + dot[2]) / 2, (dot[1] + dot[3]) / 2
    return all(iou(dot, b) < JUNK_IOU and not (b[0] <= cx <= b[2] and b[1] <= cy <= b[3]) for b in labelled)


@dataclass
class DotCounts:
    main_found: int = 0
    main_total: int = 0
    junk: int = 0
    dots: int = 0
    crowded: int = 0

    def add(self, dots: list[Box], photo: LabelledPhoto) -> None:
        main = main_objects(photo)
        self.main_total += len(main)
        self.main_found += sum(any(iou(d, m) >= MATCH_IOU for d in dots) for m in main)
        self.junk += sum(is_junk(d, photo.boxes) for d in dots)
        self.dots += len(dots)
        self.crowded += crowded_pairs(dots, photo.width, photo.height)

    @property
    def recall(self) -> float:
        return self.main_found / self.main_total if self.main_total else 0.0

    @property
    def junk_rate(self) -> float:
        return self.junk / self.dots if self.dots else 0.0


class RegionBranch:
    """The pipeline's region branch (Pipeline.find_regions without the search), with detections
    and saliency maps cached per photo so that several RegionConfigs can be compared cheaply.
    Detections are computed once at the lowest confidence of interest and filtered per row
    (greedy NMS keeps the same boxes above a higher threshold)."""

    def __init__(self, ctx: BenchContext, min_confidence: float = 0.05) -> None:
        self.ctx = ctx
        self.min_confidence = min_confidence
        self._detectors: dict[str, object] = {}
        self._maps: dict[str, object] = {}
        self._cache: dict[tuple, object] = {}
        self.ms: dict[str, list[float]] = {}

    def settings(self, **overrides):
        from lens.config import REPO_ROOT, load_settings

        return load_settings(data_dir=self.ctx.work_dir / "data", models_dir=REPO_ROOT / "var" / "models", **overrides)

    def _timed(self, key: str, fn):
        start = time.perf_counter()
        out = fn()
        self.ms.setdefault(key, []).append((time.perf_counter() - start) * 1e3)
        return out

    def work(self, key: str, rgb: np.ndarray, work_max_side: int) -> tuple[np.ndarray, float]:
        from lens.image import resize_max_side

        cache_key = ("work", key, rgb.shape, work_max_side)
        if cache_key not in self._cache:
            self._cache[cache_key] = resize_max_side(rgb, work_max_side)
        return self._cache[cache_key]

    def detections(self, key: str, work: np.ndarray, backend: str, confidence: float, options: dict | None = None):
        if backend == "none":
            return []
        if backend == "fusion":  # fuse the members' boxes above the threshold, as FusionDetector does
            from lens.detect.fusion import FusionOptions
            from lens.detect.merge import fuse, merge_duplicates

            config = self.settings().detect
            members = [self.detections(key, work, m, confidence) for m in ("ultralytics", "openvino-ssd")]
            return merge_duplicates(fuse(members, FusionOptions().fusion_iou), config.merge_iou)
        name = backend + "".join(f" {k}={v}" for k, v in sorted((options or {}).items()))
        cache_key = ("detect", key, work.shape, name)
        if cache_key not in self._cache:
            if name not in self._detectors:
                from lens.detect import create_detector

                self._detectors[name] = create_detector(self.settings(
                    detect={"backend": backend, "confidence": self.min_confidence, "options": options or {}}))
                self._detectors[name].detect(work)  # warm-up outside the timing
            detector = self._detectors[name]
            self._cache[cache_key] = self._timed(f"detect {name}", lambda: detector.detect(work))
        return [d for d in self._cache[cache_key] if d.score >= confidence]

    def saliency(self, key: str, work: np.ndarray, backend: str):
        if backend == "none":
            return None
        cache_key = ("map", key, work.shape, backend)
        if cache_key not in self._cache:
            if backend not in self._maps:
                from lens.saliency import create_saliency

                self._maps[backend] = create_saliency(self.settings(saliency={"backend": backend}))
                self._maps[backend].map(work)  # warm-up
            model = self._maps[backend]
            self._cache[cache_key] = self._timed(f"saliency {backend}", lambda: model.map(work))
        return self._cache[cache_key]

    def dots(self, key: str, rgb: np.ndarray, setting: DotSetting) -> list[Box]:
        """The dots' boxes in the pixels of `rgb`, best first."""
        from lens.saliency import select_regions

        settings = setting.settings(self)
        work, factor = self.work(key, rgb, settings.limits.work_max_side)
        dets = self.detections(key, work, settings.detect.backend, settings.detect.confidence, settings.detect.options)
        sal = self.saliency(key, work, settings.saliency.backend)
        regions = self._timed(f"select {setting.name}", lambda: select_regions(work, dets, sal, settings.regions))
        return [scale_box(r.box, factor, rgb.shape[1], rgb.shape[0]) for r in regions]


@dataclass
class DotSetting:
    """One row: a detector, a confidence, a saliency map and RegionConfig overrides."""

    name: str
    detector: str | None = None  # None: the configured default
    confidence: float | None = None
    saliency: str | None = None
    regions: dict | None = None  # None: the current RegionConfig defaults
    detect_options: dict | None = None  # the detector backend's options; None: its defaults

    def settings(self, branch: RegionBranch):
        detect = {k: v for k, v in (("backend", self.detector), ("confidence", self.confidence),
                                    ("options", self.detect_options)) if v is not None}
        saliency = {"backend": self.saliency} if self.saliency else {}
        return branch.settings(detect=detect, saliency=saliency, regions=self.regions or {})


def coco_counts(branch: RegionBranch, photos: list[LabelledPhoto], setting: DotSetting) -> DotCounts:
    counts = DotCounts()
    for photo in photos:
        counts.add(branch.dots(str(photo.path), photo.load_rgb(), setting), photo)
    return counts


def osie_shares(branch: RegionBranch, images: list, setting: DotSetting) -> tuple[float, float]:
    """Mean share of human fixations inside the top-1 and the top-3 dots."""
    from bench.bench_saliency import _fixation_share

    top1, top3 = [], []
    for im in images:
        boxes = branch.dots(f"osie {im.id}", im.load_rgb(), setting)
        top1.append(_fixation_share(im.fixations, boxes[:1]))
        top3.append(_fixation_share(im.fixations, boxes[:3]))
    return float(np.mean(top1)), float(np.mean(top3))


def grocery_photos(count: int | None) -> list[Path]:
    """GroceryStore val photos, every 3rd by listed order (99 of 296), or `count` spread out."""
    lines = [line.split(",")[0].strip() for line in (GROCERY_DIR / "val.txt").read_text().split("\n") if line.strip()]
    paths = [GROCERY_DIR / p for p in lines]
    return paths[:: max(1, len(paths) // count)][:count] if count else paths[::3]


def first_dot_on_product(branch: RegionBranch, paths: list[Path], setting: DotSetting) -> tuple[float, float]:
    """(share of photos whose first dot's box contains the centre, mean share of the photo that
    box covers: a box over the whole shelf also contains the centre, so read both)."""
    from PIL import Image


    hits, areas = 0, []
    for path in paths:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        boxes = branch.dots(str(path), rgb, setting)
        h, w = rgb.shape[:2]
        hits += bool(boxes) and boxes[0][0] <= w / 2 <= boxes[0][2] and boxes[0][1] <= h / 2 <= boxes[0][3]
        areas.append(box_area(boxes[0]) / (w * h) if boxes else 0.0)
    return (hits / len(paths), float(np.mean(areas))) if paths else (0.0, 0.0)


# "ssd" rows run openvino-ssd: the same graph and boxes as opencv-ssd (identical dots on every
# measure here, bench/RESULTS.md speed round 3), at ~0.6x its time.
def settings_rows() -> list[DotSetting]:
    return [
        DotSetting("before issue 15 (ssd 0.25, spectral)", "openvino-ssd", 0.25, "spectral-residual", BEFORE_ISSUE_15),
        DotSetting("before issue 15 ranking, yolov3-tiny 0.25", "ultralytics", 0.25, "spectral-residual", BEFORE_ISSUE_15),
        DotSetting("before issue 15 ranking, fusion 0.25", "fusion", 0.25, "spectral-residual", BEFORE_ISSUE_15),
        DotSetting("first round of issue 15 (keep detections >= 0.5)", regions=FIRST_ROUND),
        DotSetting("previous default (every segment a candidate)", regions=EVERY_SEGMENT),
        DotSetting("default now (stable segments)"),
        DotSetting("default ranking, ssd 0.25", "openvino-ssd", 0.25),
        DotSetting("default ranking, yolov3-tiny 0.15", "ultralytics", 0.15),
        DotSetting("default ranking, yolov3-tiny 0.25", "ultralytics", 0.25),
        DotSetting("default ranking, fusion 0.15", "fusion", 0.15),
        DotSetting("learned map, default RegionConfig", saliency="learned"),
        DotSetting("learned map, RegionConfig re-tuned for it", saliency="learned", regions=LEARNED_RETUNED),
    ]


def detector_table(branch: RegionBranch, halves: dict[str, list[LabelledPhoto]]) -> Table:
    """The detectors alone: the share of main objects some box matches (IoU >= 0.5, any label),
    and boxes per photo, at each threshold."""
    rows = []
    for backend in ("openvino-ssd", "ultralytics", "fusion"):
        for confidence in (0.05, 0.15, 0.25):
            row: list = [backend, confidence]
            for photos in halves.values():
                found = total = boxes = 0
                for photo in photos:
                    rgb = photo.load_rgb()
                    work, factor = branch.work(str(photo.path), rgb, branch.settings().limits.work_max_side)
                    dets = [tuple(v / factor for v in d.box) for d in branch.detections(str(photo.path), work, backend, confidence)]
                    main = main_objects(photo)
                    total += len(main)
                    found += sum(any(iou(d, m) >= MATCH_IOU for d in dets) for m in main)
                    boxes += len(dets)
                row += [found / max(total, 1), boxes / max(len(photos), 1)]
            rows.append(row)
    names = list(halves)
    return Table(
        title="Detectors alone on coco128: main objects with a box at IoU >= 0.5",
        columns=["backend", "confidence"] + [f"{n} {m}" for n in names for m in ("recall", "boxes/photo")],
        rows=rows,
        notes=("Any label counts (the dots are class-agnostic). yolov3-tiny = the offline ultralytics default "
               "(darknet YOLOv3-tiny converted to ONNX, 416 px); fusion = both, boxes fused as FusionDetector does."),
    )


def _pil_bilinear_resize(rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """lens.image.resize_max_side before issue 15's second round (PIL bilinear), for the camera
    table's "before" row."""
    from PIL import Image

    h, w = rgb.shape[:2]
    if max(h, w) <= max_side:
        return rgb, 1.0
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR)), scale


# The camera table's rows: how the work copy is made, and RegionConfig overrides.
CAMERA_VARIANTS: dict[str, tuple[str, dict]] = {
    "PIL bilinear, every segment (first round)": ("pil", EVERY_SEGMENT),
    "OpenCV area in one step, every segment (before)": ("area-one-step", EVERY_SEGMENT),
    "OpenCV area in one step, stable segments": ("area-one-step", {}),
    "halved, then OpenCV area; stable segments (now)": ("area", {}),
}


def _area_one_step_resize(rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """lens.image.resize_max_side before a camera photo was halved first (OpenCV area, one step)."""
    import cv2

    h, w = rgb.shape[:2]
    if max(h, w) <= max_side:
        return rgb, 1.0
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(np.ascontiguousarray(rgb), size, interpolation=cv2.INTER_AREA), scale


def camera_photos(count: int, start: int = 0, step: int = 37) -> list[Path]:
    """OSIE photos by sorted name, every `step`th from `start` (the camera table's 8: 0, 37, ...)."""
    from bench import OSIE_DIR

    return sorted((OSIE_DIR / "stimuli").glob("*.jpg"))[start::step][:count]


def camera_table(ctx: BenchContext, photos: list[Path], title: str = "Camera-size photos") -> Table:
    """OSIE photos upscaled to 4032 x 3024 (a 12 MP phone photo) against their 1024 px copy, through
    Pipeline.find_regions (downscale, detect, saliency, select; no catalog search), per row of
    CAMERA_VARIANTS (the work copy by PIL's bilinear resize or OpenCV's area average; every colour
    segment a candidate, or only the stable ones)."""
    from PIL import Image

    import lens.pipeline
    from lens.image import DecodedImage, resize_max_side
    from lens.pipeline import AnalyzeOptions, Pipeline, Timer

    branch = RegionBranch(ctx)
    base = Pipeline(branch.settings())
    pipelines = {}
    for name, (_resizer, regions) in CAMERA_VARIANTS.items():
        pipelines[name] = Pipeline(branch.settings(regions=regions))
        pipelines[name]._stages.update({"detect": base.detector, "saliency": base.saliency})  # one model each
    resizers = {"pil": _pil_bilinear_resize, "area-one-step": _area_one_step_resize, "area": resize_max_side}
    options = AnalyzeOptions(search=False, text=False)
    ms = {name: {"camera": [], "copy": []} for name in CAMERA_VARIANTS}
    same = dict.fromkeys(CAMERA_VARIANTS, 0)
    differing: dict[str, list[str]] = {name: [] for name in CAMERA_VARIANTS}
    try:
        for number, path in enumerate(photos):
            camera = Image.open(path).convert("RGB").resize((4032, 3024), Image.Resampling.BICUBIC)
            copy = camera.resize((1024, 768), Image.Resampling.LANCZOS)
            for name, (resizer, _regions) in CAMERA_VARIANTS.items():  # taking turns, so load hits all alike
                lens.pipeline.resize_max_side = resizers[resizer]
                pipeline = pipelines[name]
                dots = {}
                for kind, im in (("camera", camera), ("copy", copy)):
                    image = DecodedImage(rgb=np.asarray(im), sha256="0" * 64, format="JPEG")
                    if number == 0:
                        pipeline.find_regions(image, options, Timer())  # warm-up, and the models load
                    start = time.perf_counter()
                    regions = pipeline.find_regions(image, options, Timer())
                    ms[name][kind].append((time.perf_counter() - start) * 1e3)
                    dots[kind] = [tuple(v / s for v, s in zip(r.box, (im.width, im.height) * 2, strict=True)) for r in regions]
                a, b = dots["camera"], dots["copy"]
                agree = len(a) == len(b) and all(max(iou(x, y) for y in b) >= 0.8 for x in a)
                same[name] += agree
                if not agree:
                    differing[name].append(path.stem)
    finally:
        lens.pipeline.resize_max_side = resize_max_side
    rows = []
    for name in CAMERA_VARIANTS:
        camera_ms, copy_ms = float(np.median(ms[name]["camera"])), float(np.median(ms[name]["copy"]))
        rows.append([name, base.settings.limits.work_max_side, f"{same[name]}/{len(photos)}",
                     " ".join(differing[name]) or "-", camera_ms, copy_ms, camera_ms / copy_ms])
    return Table(
        title=f"{title}: {len(photos)} OSIE photos at 4032 x 3024 and their 1024 x 768 copy",
        columns=["work copy, segments", "work_max_side", "same dots (count, each at IoU >= 0.8 with one of the other's)",
                 "photos that differ", "camera median ms", "copy median ms", "camera / copy"],
        rows=rows,
        notes=("The region branch of Pipeline.find_regions with the default settings but for the row's, 1 thread; "
               "the camera photo's time includes its downscale (the copy needs none). Upscaled with PIL bicubic; "
               "the copy is the camera photo downscaled with Lanczos. Stable segments: RegionConfig.segment_dithers. "
               "Shared machine: read the ratio."),
    )


def grocery_tables(ctx: BenchContext, quick: bool) -> list[Table]:
    """What more dots cost and buy on GroceryStore: the retrieval issue's measures (first-dot top-1,
    any-dot top-5, iconic-only catalog, the default embedder and re-ranking) on the report half
    (odd lines of val.txt), and the region branch's median ms (detect + saliency + select + embed
    + search + rerank) on 20 tuning-half photos, for the first round's RegionConfig and now."""
    from bench.bench_grocery import (
        MemoisedStage,
        analyse,
        catalog_items,
        region_latency,
        split,
        summarise,
    )
    from lens.config import REPO_ROOT, load_settings
    from lens.embed import create_embedder
    from lens.index import open_catalog
    from lens.pipeline import Pipeline

    configs = {"first round of issue 15 (keep detections >= 0.5)": {"regions": FIRST_ROUND},
               "previous default (every segment a candidate)": {"regions": EVERY_SEGMENT},
               "default now (stable segments)": {}}
    photos = split("val")
    report = [p for p in photos if p.half == "report"][:: 7 if quick else 1]
    tuning = [p for p in photos if p.half == "tune"][: 4 if quick else 20]
    base = load_settings(data_dir=ctx.work_dir / "data", models_dir=REPO_ROOT / "var" / "models")
    probe = Pipeline(base)
    shared = {"detect": MemoisedStage(probe.detector, "detect"), "saliency": MemoisedStage(probe.saliency, "map")}
    embedder = create_embedder(base)
    rows = []
    with tempfile.TemporaryDirectory(dir=ctx.work_dir) as tmp:
        settings = {name: load_settings(data_dir=tmp, models_dir=REPO_ROOT / "var" / "models",
                                        index={"min_score": 0.0, "match_floor": -1.0}, ocr={"backend": "none"},
                                        translate={"backend": "none"}, **overrides)
                    for name, overrides in configs.items()}
        catalog = open_catalog(next(iter(settings.values())), embedder, create=True)
        catalog.add_images(catalog_items(0), join_external_id=True)
        catalog.save()
        catalog.close()
        for name, s in settings.items():
            pipeline = Pipeline(s)
            pipeline._stages.update(shared)  # one detector and saliency model, their outputs memoised
            pipeline._stages["embed"] = embedder
            results = analyse(pipeline, report)
            summary = summarise(results)
            rows.append([name, len(results), summary["first dot top-1"], summary["first dot top-5"],
                         summary["any dot top-5"], float(np.mean([len(r.dots) for r in results]))])
    latency = region_latency(ctx, configs, tuning)
    latency.notes += (" Configurations: RegionConfig of the first issue-15 round, before stable segments, and now"
                      " (bench_dots).")
    return [Table(
        title=f"GroceryStore retrieval with these dots: {len(report)} report-half val photos, iconic-only catalog",
        columns=["setting", "photos", "first dot top-1", "first dot top-5", "any dot top-5", "dots/photo"],
        rows=rows,
        notes="Pipeline.analyze (text off) with the default embedder and re-ranking, matches without a score floor, "
              "as in bench_grocery; only RegionConfig differs between the rows.",
    ), latency]


def dots_table(branch: RegionBranch, tuning: list[LabelledPhoto], report: list[LabelledPhoto], osie: list,
               grocery: list[Path], settings: list[DotSetting]) -> Table:
    """The dots table: one row per setting, on coco128's halves, OSIE and GroceryStore photos."""
    rows = []
    for setting in settings:
        t, r = coco_counts(branch, tuning, setting), coco_counts(branch, report, setting)
        top1, top3 = osie_shares(branch, osie, setting)
        product, product_area = first_dot_on_product(branch, grocery, setting)
        rows.append([setting.name, t.recall, t.junk_rate, t.crowded, r.recall, r.junk_rate, r.crowded,
                     f"{r.main_found}/{r.main_total}", f"{r.junk}/{r.dots}", r.dots / max(len(report), 1),
                     top1, top3, product, product_area,
                     float(np.median(branch.ms[f"select {setting.name}"]))])
    timing = ", ".join(f"{k} {np.median(v):.0f} ms" for k, v in branch.ms.items() if not k.startswith("select"))
    return Table(
        title=f"Dots on coco128 (tuning {len(tuning)} / report {len(report)} photos), OSIE ({len(osie)}) and GroceryStore ({len(grocery)})",
        columns=["setting", "tune recall", "tune junk", "tune crowded", "report recall", "report junk",
                 "report crowded", "report main found", "report junk dots", "report dots/photo", "OSIE top-1 fix.",
                 "OSIE top-3 fix.", "grocery first dot on product", "its area share", "select median ms"],
        rows=rows,
        notes=("Recall: up to 3 largest labelled objects >= 3% of the photo, matched by any dot at IoU >= 0.5. "
               "Junk: dots with IoU < 0.3 to every labelled object and centre inside none. Crowded: pairs of dot "
               "centres closer than 4% of the diagonal. coco128 are COCO train photos, so COCO detectors are at "
               "their best. Grocery: first dot's box contains the photo centre. Median ms per photo, 1 thread: "
               + timing),
    )


def run(ctx: BenchContext) -> list[Table]:
    from lens.saliency.train import test_images

    single_thread()
    photos = load_coco128()
    tuning, report = split(photos)
    if ctx.quick:
        tuning, report = tuning[: QUICK_PHOTOS // 2], report[: QUICK_PHOTOS // 2]
    osie = test_images(limit=QUICK_PHOTOS if ctx.quick else None)
    grocery = grocery_photos(QUICK_PHOTOS if ctx.quick else None)
    branch = RegionBranch(ctx)
    return [detector_table(branch, {"tune": tuning, "report": report}),
            camera_table(ctx, camera_photos(3 if ctx.quick else 8)),
            *grocery_tables(ctx, ctx.quick),
            dots_table(branch, tuning, report, osie, grocery, settings_rows())]

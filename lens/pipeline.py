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
from lens.config import IndexConfig, Settings, get_settings
from lens.geometry import scale_box
from lens.image import DecodedImage, crop_box, resize_max_side
from lens.stages import BRANCH_NAMES, STAGES, is_enabled
from lens.threads import map_beside, split_for_cores
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




def honest_matches(region: Region, matches: list[Match], config: IndexConfig) -> Region:
    """A dot's matches above the calibrated floor (none: `no_close_match`), and its label from
    a confident top match's title rather than from the detector's class."""
    kept = [m for m in matches if m.score >= config.match_floor]
    update: dict[str, Any] = {"matches": kept, "no_close_match": not kept}
    if kept and kept[0].title and kept[0].score >= config.label_floor:
        update["label"] = kept[0].title
    return region.model_copy(update=update)


def combine_multisearch(shortlist: list[Match], text_scores: dict[int, float], text_weight: float) -> list[Match]:
    """An image search's shortlist re-scored by words: (1 - text_weight) * its image score +
    text_weight * the item's text score (0 for an item the words do not reach), best first."""
    rescored = [m.model_copy(update={"score": round((1 - text_weight) * m.score + text_weight * text_scores.get(m.item_id, 0.0), 4)})
                for m in shortlist]
    return sorted(rescored, key=lambda m: -m.score)


class Pipeline:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self._lock = threading.RLock()
        self._stages: dict[str, Any] = {}
        self._side: ThreadPoolExecutor | None = None
        self._versions: dict[str, str] | None = None

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
    def reranker(self):
        from lens.index.rerank import Reranker

        return self._stage("rerank", lambda: Reranker(self.settings.rerank))

    @property
    def catalog(self):
        """The operator's catalog, or None when none has been built yet."""
        from lens.index import open_catalog

        return self._stage("catalog", lambda: open_catalog(self.settings, self.embedder))

    @property
    def text_embedder(self):
        """The sentence model; loaded by the first text search only (analyze never asks)."""
        from lens.textembed import create_text_embedder

        return self._stage("textembed", lambda: create_text_embedder(self.settings))

    @property
    def text_index(self):
        """The catalog's text index (lens.index.text), synced with the catalog on each search."""
        from lens.index.text import TextIndex

        return self._stage("text_index", lambda: TextIndex(
            self.settings.catalog_dir, self.text_embedder, self.settings.text_search))

    @property
    def ocr(self):
        from lens.ocr import create_ocr

        return self._stage("ocr", lambda: create_ocr(self.settings))

    @property
    def translation(self):
        from lens.translate import create_translation_service

        return self._stage("translate", lambda: create_translation_service(self.settings))

    def warm_up(self, branches: tuple[str, ...] = BRANCH_NAMES) -> None:
        """Load the configured models of these branches now and run each once, so that the first
        photo does not pay seconds of loading (call it from a background thread at server/worker
        start)."""
        s = self.settings
        stages = []
        if "regions" in branches:
            stages += [self.detector] if is_enabled(s, "detect") else []
            stages += [self.saliency] if is_enabled(s, "saliency") else []
            stages += [self.embedder, self.catalog]
        if "text" in branches and is_enabled(s, "ocr"):
            from lens.langid import warm_up as warm_up_langid

            warm_up_langid()
            stages.append(self.ocr)
            stages += [self.translation] if is_enabled(s, "translate") else []
        for stage in stages:
            warm_up = getattr(stage, "warm_up", None)
            if warm_up is not None:
                warm_up()

    def reload_catalog(self) -> None:
        """Drop the cached catalog so the next search reopens it (after index writes)."""
        with self._lock:
            self._stages.pop("catalog", None)

    def model_versions(self) -> dict[str, str]:
        """What decides a result, per enabled stage (lens.registry.stage_version): its backend,
        the model files that backend loads and the settings that change its output. Part of
        the result cache key; computed from configuration and model files only, so the gateway
        calls it without loading a model. Computed once per pipeline, as the gateway does: its
        settings are fixed and its models load once, and fingerprinting model folders (every
        installed translation pair) costs milliseconds that every analysis would pay again."""
        from lens.registry import stage_version

        if self._versions is None:
            versions = {"lens": __version__}
            for stage in STAGES:
                if is_enabled(self.settings, stage.name) and (stage.backends or stage.decided_by):
                    versions[stage.name] = stage_version(stage, self.settings)
            self._versions = versions
        return dict(self._versions)

    # -- branches --------------------------------------------------------------------------
    def find_regions(
        self, image: DecodedImage, options: AnalyzeOptions, timer: Timer
    ) -> list[Region]:
        from lens.saliency import image_segments, select_regions

        s = self.settings
        work, factor = resize_max_side(image.rgb, s.limits.work_max_side)
        regions_config = s.regions
        if options.max_regions is not None:
            regions_config = regions_config.model_copy(update={"max_regions": options.max_regions})
        # The colour segments and the saliency map need only the work image: they are found on
        # the other core while this one detects (all three release the GIL: OpenCV, OpenVINO,
        # onnxruntime). Segments and saliency take about as long as detection together.
        def segments_and_saliency() -> tuple[list[Box], np.ndarray | None]:
            segments = self._timed("segments", timer, image_segments, work, regions_config)
            if not is_enabled(s, "saliency"):
                return segments, None
            return segments, self._timed("saliency", timer, self.saliency.map, work)

        side_future = self._side_pool().submit(segments_and_saliency)
        detections: list[Detection] = []
        if is_enabled(s, "detect"):
            with timer.stage("detect"):
                detections = self.detector.detect(work)
        with timer.stage("select"):
            segments, saliency_map = side_future.result()
            regions = select_regions(work, detections, saliency_map, regions_config, segments)
        h, w = image.height, image.width
        regions = [r.model_copy(update={"box": scale_box(r.box, factor, w, h)}) for r in regions]
        if options.search and regions and self.catalog is not None:
            index = s.index
            head = self.catalog.active_head()
            if head is not None and head.floors and index.use_head_floors:  # floors in the head's score space
                index = index.model_copy(update=head.floors)
            matches = self.search_boxes(image, [r.box for r in regions], timer=timer, floor=index.match_floor)
            regions = [honest_matches(r, m, index) for r, m in zip(regions, matches, strict=True)]
        return regions

    @staticmethod
    def _timed(stage: str, timer: Timer, fn: Callable[..., Any], *args: Any) -> Any:
        with timer.stage(stage):
            return fn(*args)

    def _side_pool(self) -> ThreadPoolExecutor:
        """Threads for work that runs beside a stage of the same photo (one per core: at most
        one side task per photo in flight, and no more photos than cores compute at once)."""
        with self._lock:
            if self._side is None:
                from lens.threads import cpu_count

                self._side = ThreadPoolExecutor(max_workers=cpu_count(), thread_name_prefix="lens-side")
            return self._side

    def search_boxes(
        self, image: DecodedImage, boxes: list[Box], k: int | None = None, timer: Timer | None = None,
        floor: float | None = None,
    ) -> list[list[Match]]:
        """Catalog matches for each box (original-image pixels) of `image`. With `floor` (the
        caller keeps only matches scoring at least that), a crop whose best match stays below it
        even with the largest re-ranking bonus is not re-ranked: all its matches are dropped
        either way, so the answer is the same without the cost of verifying them."""
        timer = timer or Timer()
        catalog = self.catalog
        if catalog is None or not boxes:
            return [[] for _ in boxes]
        crops = [crop_box(image.rgb, box, margin=0.05) for box in boxes]
        side = self._side_pool()
        with timer.stage("embed"):
            # Half the crops on each core (a CPU gains little from batching a CNN).
            vectors = np.concatenate(map_beside(side, self.embedder.embed, split_for_cores(crops)))
        k = k or self.settings.index.top_k
        rerank = self.settings.rerank
        with timer.stage("search"):
            found = catalog.search(
                np.asarray(vectors, dtype=np.float32),
                k=max(k, rerank.shortlist) if rerank.enabled else k,
                min_score=self.settings.index.min_score,
            )
        if rerank.enabled:
            from lens.index.rerank import max_bonus

            reach = max_bonus(rerank) + 1e-3  # and the 4-decimal rounding of re-ranked scores

            def verified(pairs: list[tuple[np.ndarray, list[Match]]]) -> list[list[Match]]:
                return [matches if floor is not None and (not matches or matches[0].score + reach < floor)
                        else self.reranker.rerank(crop, matches, catalog) for crop, matches in pairs]

            with timer.stage("rerank"):
                runs = map_beside(side, verified, split_for_cores(list(zip(crops, found, strict=True))))
                found = [matches for run in runs for matches in run]
        return [matches[:k] for matches in found]

    def search_text(self, query: str, k: int | None = None, timer: Timer | None = None) -> list[Match]:
        """Catalog items for words: sentence embedding fused with a keyword match (lens.index.text).
        NoCatalogError when no catalog has been built."""
        timer = timer or Timer()
        catalog = self._require_catalog()
        index = self.text_index
        with timer.stage("text_index"):
            index.sync(catalog)
        with timer.stage("text_search"):
            hits = index.search(query, k or self.settings.index.top_k)
        return catalog.matches_for((h.item_id, h.score) for h in hits)

    def multisearch(self, image: DecodedImage, box: Box, query: str, k: int | None = None) -> list[Match]:
        """An image (box) search refined by words: the image search's shortlist of
        text_search.multisearch_shortlist items is re-ranked by
        (1 - multisearch_text_weight) * image score + multisearch_text_weight * text score,
        the text score being the fused embedding + keyword score of lens.index.text."""
        config = self.settings.text_search
        k = k or self.settings.index.top_k
        catalog = self._require_catalog()
        shortlist = self.search_boxes(image, [box], k=max(k, config.multisearch_shortlist))[0]
        if not shortlist:
            return []
        index = self.text_index
        index.sync(catalog)
        text_scores = {h.item_id: h.score for h in index.search(query, len(shortlist),
                                                                  restrict=[m.item_id for m in shortlist])}
        return combine_multisearch(shortlist, text_scores, config.multisearch_text_weight)[:k]

    def _require_catalog(self):
        catalog = self.catalog
        if catalog is None:
            from lens.index.text import NoCatalogError

            raise NoCatalogError(
                "there is no catalog to search yet; build one with `lens index add <folder>` "
                "(or `lens demo-catalog`), or add items with POST /api/v1/items")
        return catalog

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
        if is_enabled(self.settings, "translate") and blocks:
            with timer.stage("translate"):
                blocks = self.translation.translate_blocks(blocks, target)
        return blocks

    # -- the whole photo -------------------------------------------------------------------
    def analyze(self, image: DecodedImage, options: AnalyzeOptions | None = None) -> AnalyzeResult:
        options = options or AnalyzeOptions()
        timer = Timer()
        want_regions = options.regions
        want_text = options.text and is_enabled(self.settings, "ocr")
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
        return self.assemble_result(image.sha256, image.width, image.height, regions, blocks,
                                    timer.ms, options.model_dump())

    def assemble_result(
        self, image_id: str, width: int, height: int, regions: list[Any], text_blocks: list[Any],
        timings_ms: dict[str, float], options: dict[str, Any], warnings: list[str] | None = None,
    ) -> AnalyzeResult:
        """The one place an AnalyzeResult is made: in-process here, and by the fleet's merge
        task from the two branches' stored outputs."""
        return AnalyzeResult(
            image_id=image_id, width=width, height=height, regions=regions, text_blocks=text_blocks,
            timings_ms=timings_ms, model_versions=self.model_versions(), options=options,
            warnings=warnings or [],
        )



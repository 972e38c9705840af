"""PP-OCRv6 text lines from rapidocr, with orientation decided per group of lines.

rapidocr's 0/180 line classifier sometimes flips an upright line on its own (and then reads it
upside down and mirrors its word boxes). A single line's flip is not trusted: lines that sit
together (a sign, a paragraph) share one orientation, decided by an area-weighted vote of the
classifier, and if the recogniser is still unsure the opposite orientation is tried for the
whole group. Lines taller than wide are turned 90 degrees by rapidocr before classification,
so 90/270 text becomes a 0/180 decision too.

Recognition is a callback, so the Tesseract backend reuses detection and orientation here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lens.config import OcrConfig
from lens.errors import ModelMissingError
from lens.ocr.groups import connected_groups
from lens.threads import (
    CompiledPerShape,
    PerThreadRequests,
    current_threads,
    map_beside,
    onnx_session_options,
    openvino_config,
    resolved_precision,
)
from lens.types import Point, TextLine

# Below this (length-weighted) mean recognition score a group is re-read upside down too.
RECHECK_BELOW = 0.85
# Words read without the space between them ("RafflesCity", "TOMMYHILF"): the recogniser's
# space class still rises between them, though blank wins. A space goes in where its
# probability reaches this at any step between two characters (OcrConfig.rec_space_probability).
SPACE_PROBABILITY = 0.1

Recognizer = Callable[[list[np.ndarray]], list[tuple[str, float]]]


@dataclass
class LineCandidate:
    quad: np.ndarray  # 4x2 float32, original pixels, clockwise from the box's top-left: the crop read
    crop: np.ndarray  # BGR crop in rapidocr's base orientation (tall lines turned 90 deg CCW)
    vertical: bool
    flip_vote: float  # classifier: +score when it says 180, -score when it says 0
    # The same text region grown less (det_outline_unclip_ratio), corners in quad's order: the
    # polygon shown and returned. None: the quad itself.
    outline: np.ndarray | None = None

    @property
    def shown(self) -> np.ndarray:
        return self.quad if self.outline is None else self.outline

    @property
    def weight(self) -> float:
        h, w = self.crop.shape[:2]
        return float(h * w)


def reading_polygon(quad: np.ndarray, vertical: bool, flipped: bool) -> list[Point]:
    """The quad's corners starting at the text's own top-left, clockwise as the text reads.

    rapidocr turns a tall crop counter-clockwise (its top-right corner becomes the top-left)
    and the classifier may turn it by 180 more; each step moves the starting corner by one or
    two places.
    """
    shift = (1 if vertical else 0) + (2 if flipped else 0)
    return [(float(quad[(i + shift) % 4][0]), float(quad[(i + shift) % 4][1])) for i in range(4)]


def group_neighbours(candidates: Sequence[LineCandidate]) -> list[list[int]]:
    """Indices of lines that touch once grown by half their thickness (same direction only)."""
    boxes = []
    for c in candidates:
        x1, y1 = c.quad.min(axis=0)
        x2, y2 = c.quad.max(axis=0)
        grow = 0.5 * min(c.crop.shape[:2])
        boxes.append((x1 - grow, y1 - grow, x2 + grow, y2 + grow))

    def touching(i: int, j: int) -> bool:
        a, b = boxes[i], boxes[j]
        same_direction = candidates[i].vertical == candidates[j].vertical
        return same_direction and a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]

    return connected_groups(len(candidates), touching)


def _mean_score(readings: Sequence[tuple[str, float]]) -> float:
    total = sum(max(len(t), 1) for t, _ in readings)
    return sum(max(len(t), 1) * s for t, s in readings) / total if total else 0.0


def resolve_orientation(
    candidates: Sequence[LineCandidate], recognize: Recognizer
) -> list[tuple[LineCandidate, bool, str, float]]:
    """(candidate, flipped, text, score) per line, orientation voted per group of lines."""
    results: list[tuple[LineCandidate, bool, str, float] | None] = [None] * len(candidates)
    groups = group_neighbours(candidates)
    flips = {}
    for group in groups:
        vote = sum(candidates[i].weight * candidates[i].flip_vote for i in group)
        for i in group:
            flips[i] = vote > 0
    order = list(range(len(candidates)))
    crops = [_oriented(candidates[i].crop, flips[i]) for i in order]
    readings = recognize(crops) if crops else []
    by_index = dict(zip(order, readings, strict=True))
    retry = [g for g in groups if _mean_score([by_index[i] for i in g]) < RECHECK_BELOW]
    retry_indices = [i for g in retry for i in g]
    if retry_indices:
        second = recognize([_oriented(candidates[i].crop, not flips[i]) for i in retry_indices])
        second_by_index = dict(zip(retry_indices, second, strict=True))
        for group in retry:
            if _mean_score([second_by_index[i] for i in group]) > _mean_score([by_index[i] for i in group]):
                for i in group:
                    flips[i] = not flips[i]
                    by_index[i] = second_by_index[i]
    for i, c in enumerate(candidates):
        text, score = by_index[i]
        results[i] = (c, flips[i], text, score)
    return [r for r in results if r is not None]


def _oriented(crop: np.ndarray, flipped: bool) -> np.ndarray:
    return np.ascontiguousarray(crop[::-1, ::-1]) if flipped else crop


def matching_outline(quad: np.ndarray, outlines: Sequence[np.ndarray]) -> np.ndarray | None:
    """The outline of the same region as quad: the one whose centre lies inside quad and
    nearest quad's centre, its corners turned to start where quad's do; None if none lies
    inside (the outline post-processing dropped the region as too small)."""
    import cv2

    contour = quad.reshape(-1, 1, 2).astype(np.float32)
    centre = quad.mean(axis=0)
    best, best_distance = None, np.inf
    for outline in outlines:
        c = outline.mean(axis=0)
        if cv2.pointPolygonTest(contour, (float(c[0]), float(c[1])), False) < 0:
            continue
        distance = float(np.linalg.norm(c - centre))
        if distance < best_distance:
            best, best_distance = outline, distance
    if best is None:
        return None
    turns = [np.roll(best, -k, axis=0) for k in range(4)]
    return min(turns, key=lambda t: float(np.linalg.norm(t - quad, axis=1).sum()))


def pad_thin_strip(bgr: np.ndarray, max_side_len: float) -> np.ndarray:
    """A strip so thin that the detector's shrink to max_side_len rounds its short side to 0 px
    (e.g. 24000x20: nothing would be found) gets white rows/columns at the bottom/right, up to
    24 px after the shrink (sides are rounded to multiples of 32, and round() takes 16/32 to 0);
    line coordinates stay those of the original."""
    h, w = bgr.shape[:2]
    longest, shortest = max(h, w), min(h, w)
    needed = int(np.ceil(longest * 24 / max_side_len)) + 1
    if longest <= max_side_len or shortest >= needed:
        return bgr
    canvas = np.full((max(h, needed), w, 3) if h < w else (h, max(w, needed), 3), 255, dtype=np.uint8)
    canvas[:h, :w] = bgr
    return canvas


def _multiple_of_32(side: int) -> int:
    """rapidocr's rounding of the detector's input sides (round half to even, as its round())."""
    return int(round(side / 32) * 32)


def detector_image(bgr: np.ndarray, max_side: int) -> np.ndarray | None:
    """The photo at the detector's input size as rapidocr's DetPreProcess makes it (shrunk to
    max_side at most, linear resize, sides rounded to multiples of 32), still uint8 BGR. None
    when a side rounds to 0."""
    import cv2

    h, w = bgr.shape[:2]
    ratio = max_side / max(h, w) if max(h, w) > max_side else 1.0
    size = (_multiple_of_32(int(w * ratio)), _multiple_of_32(int(h * ratio)))
    if min(size) <= 0:
        return None
    return np.ascontiguousarray(cv2.resize(bgr, size) if size != (w, h) else bgr)


def normalised_for_detector(image: np.ndarray) -> np.ndarray:
    """detector_image's output as the network's input: (x / 255 - 0.5) / 0.5, NCHW float32,
    within 1e-6 of rapidocr's, which normalises in float64 (~60 ms for a 1600 px photo)."""
    import cv2

    # (x - 127.5) * 2/255 == (x / 255 - 0.5) / 0.5; channel order kept (the detector reads BGR).
    return cv2.dnn.blobFromImage(image, scalefactor=2.0 / 255.0, mean=(127.5, 127.5, 127.5), swapRB=False)


def _detector_with_uint8_input(model: Path):
    """The detector with its normalisation built in (OpenVINO preprocessing): it takes the uint8
    BGR photo as (1, H, W, 3), and the scaling, run on the network's threads, is fused into its
    first layer; made by cv2 on one thread beforehand, it took ~20 ms a 1600 px photo. The map
    is within 1e-5 of the float input's in f32 (tests/test_ocr_det_runtime.py)."""
    import openvino as ov
    from openvino.preprocess import PrePostProcessor

    ppp = PrePostProcessor(ov.Core().read_model(str(model)))
    ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
    ppp.input().model().set_layout(ov.Layout("NCHW"))
    ppp.input().preprocess().convert_element_type(ov.Type.f32).mean(127.5).scale(127.5)
    return ppp.build()


def _rapidocr_model(name: str, role: str) -> Path:
    import rapidocr

    path = Path(rapidocr.__file__).parent / "models" / name
    if not path.is_file():
        raise ModelMissingError(f"the {role} {path} is missing; reinstall rapidocr (make setup)")
    return path


def detector_file() -> Path:
    """PP-OCRv6 small's text detector as the rapidocr wheel ships it."""
    return _rapidocr_model("PP-OCRv6_det_small.onnx", "text detector")


def recognizer_file() -> Path:
    """PP-OCRv6 small's line recogniser as the rapidocr wheel ships it (the file rapidocr's own
    session loads, its character list in the metadata)."""
    return _rapidocr_model("PP-OCRv6_rec_small.onnx", "text recogniser")


def onnx_first_output(model: Path, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """input -> the model's first output, on an onnxruntime session of its own with `threads`
    threads (called as rapidocr's sessions are)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), sess_options=onnx_session_options(threads),
                                   providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda tensor: session.run(None, {name: tensor})[0]


def text_map_runner(model: Path, runtime: str, threads: int, precision: str = "f32") -> Callable[[np.ndarray], np.ndarray]:
    """detector_image's uint8 photo (H, W, 3) -> the detector's text map (1, 1, H, W), on
    `runtime` with `threads` intra-op threads (OpenVINO: at `precision`,
    lens.threads.openvino_config's). One call at a time (PpOcrLines holds its lock)."""
    if runtime == "openvino":
        # Compiled per photo size (the sides of a multiple-of-32 copy): 0.76-0.79x the time. Each
        # size kept holds ~150-200 MB at 1600 px; two (a camera's landscape and portrait) hold
        # what the dynamic graph held after photos of five sizes (~540 MB RSS either way).
        compiled = CompiledPerShape(_detector_with_uint8_input(model),
                                    openvino_config(threads=threads, streams=1, precision=precision), keep=2)
        return lambda image: compiled.infer(image[None])
    net = onnx_first_output(model, threads)
    return lambda image: net(normalised_for_detector(image))


def resolved_rec_runtime(runtime: str, precision: str) -> str:
    """The recogniser's runtime for a rec_runtime setting: "auto" is "openvino" where the
    recogniser computes in bf16 (`precision` resolved), else "onnxruntime" (faster in float32)."""
    if runtime != "auto":
        return runtime
    return "openvino" if resolved_precision(precision) == "bf16" else "onnxruntime"


class OpenVinoRecognizerNet:
    """The recogniser's network on OpenVINO, called as rapidocr's session is (a batch of lines
    (N, 3, 48, W), any W -> per-step class probabilities): one request per calling thread on
    `streams` streams (default one per core, lens.threads.openvino_config), so photos read side
    by side."""

    def __init__(self, model: Path, threads: int, precision: str = "f32", streams: int | None = None) -> None:
        import openvino as ov

        compiled = ov.Core().compile_model(str(model), "CPU", openvino_config(threads=threads, streams=streams, precision=precision))
        self._requests = PerThreadRequests(compiled)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self._requests.first_output(batch)


class WideningRecognizer:
    """rapidocr's recogniser session with a second copy of the network on more threads, used by
    the calling thread inside widened(): a photo whose lines make one batch has the cores that
    would have read its other batches (a batch of 1-6 lines on 2 threads: 0.53-0.6x the time
    of 1; the same network, so the same text, tests/test_ocr_rec_runtime.py)."""

    def __init__(self, narrow: Callable[[np.ndarray], np.ndarray], wide: Callable[[np.ndarray], np.ndarray]) -> None:
        self._narrow, self._wide = narrow, wide
        self._local = threading.local()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return (self._wide if getattr(self._local, "wide", False) else self._narrow)(batch)

    @contextmanager
    def widened(self) -> Iterator[None]:
        self._local.wide = True
        try:
            yield
        finally:
            self._local.wide = False


def ctc_columns(indices: np.ndarray) -> np.ndarray:
    """The time steps at which greedy CTC decoding emits a character (rapidocr's decode: the
    first step of each run of one class, blank (0) dropped): one per character of the text."""
    keep = np.ones(len(indices), dtype=bool)
    keep[1:] = indices[1:] != indices[:-1]
    keep &= indices != 0
    return np.flatnonzero(keep)


def split_at_spaces(text: str, columns: np.ndarray, space: np.ndarray, threshold: float) -> str:
    """text with a space between two characters where the space class's probability (space,
    per time step) reaches threshold at any step from the one character's column to the
    next's, except between two CJK characters (written without spaces). A cut that would
    leave a lone letter or digit is made only at the edge of a word of three or more (the
    stray "H" of "CHEVRONH"); letter-spaced text ("ZALORA" read with a space hint between
    every letter) stays whole."""
    if threshold >= 1.0 or len(columns) != len(text) or len(text) < 2:
        return text
    cuts = [i for i in range(1, len(text))
            if not text[i - 1].isspace() and not text[i].isspace()
            and not (_is_cjk(text[i - 1]) and _is_cjk(text[i]))  # written without spaces
            and float(space[columns[i - 1]:columns[i] + 1].max()) >= threshold]
    if not cuts:
        return text
    bounds = [0, *cuts, len(text)]
    pieces = [text[bounds[k]:bounds[k + 1]] for k in range(len(bounds) - 1)]

    def alnum(s: str) -> int:
        return sum(ch.isalnum() for ch in s)

    kept = set()
    for k, cut in enumerate(cuts):
        left, right = pieces[k].split()[-1], pieces[k + 1].split()[0]
        left_free = k == 0 or " " in pieces[k]  # the left word's other side: line start or a space
        right_free = k + 2 == len(pieces) or " " in pieces[k + 1]
        a, b = alnum(left), alnum(right)
        if (a == 0 or b == 0 or (a >= 2 and b >= 2)
                or (a == 1 and left_free and b >= 3) or (b == 1 and right_free and a >= 3)):
            kept.add(cut)
    return "".join((" " if i in kept else "") + ch for i, ch in enumerate(text))


class _SpacedDecode:
    """rapidocr's CTC decoding, then split_at_spaces on each line (scores unchanged: the mean
    over the characters read, as rapidocr computes it)."""

    def __init__(self, decode, threshold: float) -> None:
        self.decode = decode
        self.threshold = threshold
        self.space_index = len(decode.character) - 1
        if decode.character[self.space_index] != " ":
            raise ValueError("rapidocr's character list no longer ends with the space")

    def __call__(self, preds: np.ndarray, return_word_box: bool = False, **kwargs):
        lines, words = self.decode(preds, return_word_box, **kwargs)
        if return_word_box:  # word boxes count characters: leave the text as decoded
            return lines, words
        indices = preds.argmax(axis=2)
        spaced = [(split_at_spaces(text, ctc_columns(indices[k]), preds[k, :, self.space_index], self.threshold), score)
                  for k, (text, score) in enumerate(lines)]
        return spaced, words


class PpOcrLines:
    """Finds text lines with PP-OCRv6 small (rapidocr 3.10.0) and classifies their 0/180 turn."""

    def __init__(
        self,
        det_max_side: int = 960,
        threads: int = 1,
        det_upscale: bool = False,
        box_threshold: float = 0.5,
        unclip_ratio: float = 1.6,
        pixel_threshold: float = 0.3,
        outline_unclip_ratio: float | None = None,
        det_runtime: str = "onnxruntime",
        det_threads: int | None = None,
        det_precision: str = "f32",
        det_max_enlargement: float | None = None,
        space_probability: float = SPACE_PROBABILITY,
        rec_runtime: str = "onnxruntime",
        rec_precision: str = "f32",
    ) -> None:
        from rapidocr import RapidOCR
        from rapidocr.ch_ppocr_det.utils import DBPostProcess

        self.det_side = det_max_side
        self.det_upscale = det_upscale
        self.det_max_enlargement = det_max_enlargement
        self._engine = RapidOCR(
            params={
                "Global.log_level": "warning",
                "EngineConfig.onnxruntime.intra_op_num_threads": threads,
                "EngineConfig.onnxruntime.inter_op_num_threads": 1,
                # We hand the detector a copy already at its size; these only round it to 32.
                "Det.limit_type": "max",
                "Det.limit_side_len": det_max_side,
                "Det.box_thresh": box_threshold,
                "Det.unclip_ratio": unclip_ratio,
                "Det.thresh": pixel_threshold,
            }
        )
        # The outline: the same DB post-processing of the same map, but regions grown by
        # outline_unclip_ratio (rapidocr's other defaults: max_candidates 1000, 2x2 dilation).
        self._outline_post = None
        if outline_unclip_ratio is not None and outline_unclip_ratio != unclip_ratio:
            self._outline_post = DBPostProcess(
                thresh=pixel_threshold, box_thresh=box_threshold, max_candidates=1000,
                unclip_ratio=outline_unclip_ratio, score_mode="fast", use_dilation=True,
            )
        # The detector's network runs here, not in rapidocr's session: on det_runtime, with
        # det_threads (it runs one photo at a time, behind the lock; classification keeps
        # rapidocr's session, and recognition its batches, on `threads` each).
        self._text_map = text_map_runner(detector_file(), det_runtime, det_threads or threads, det_precision)
        # Batches of lines beside this thread's (one photo may use det_threads cores).
        self._rec_pool = ThreadPoolExecutor(max_workers=det_threads - 1, thread_name_prefix="lens-rec") \
            if det_threads and det_threads > 1 else None
        self.space_probability = space_probability
        # The recogniser's network: rapidocr's onnxruntime session, or the same file on OpenVINO.
        rec_runtime = resolved_rec_runtime(rec_runtime, rec_precision)
        self._rec_net = OpenVinoRecognizerNet(recognizer_file(), threads, rec_precision) if rec_runtime == "openvino" else None
        # ... and on det_threads, for a photo whose lines make one batch (WideningRecognizer).
        self._wide_rec_net = None
        if self._rec_pool is not None:
            self._wide_rec_net = OpenVinoRecognizerNet(recognizer_file(), det_threads, rec_precision, streams=1) \
                if rec_runtime == "openvino" else onnx_first_output(recognizer_file(), det_threads)
        # rapidocr keeps the last call's use_det/cls/rec flags on the instance; we always pass
        # the same ones, and the lock keeps a concurrent caller from seeing half an update.
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, ocr: OcrConfig, det_threads: int | None = None) -> PpOcrLines:
        """`det_threads`: lens.threads.one_at_a_time_threads(settings); default the policy's."""
        return cls(
            det_max_side=ocr.det_max_side,
            threads=current_threads(),
            det_upscale=ocr.det_upscale,
            box_threshold=ocr.det_box_threshold,
            unclip_ratio=ocr.det_unclip_ratio,
            pixel_threshold=ocr.det_pixel_threshold,
            outline_unclip_ratio=ocr.det_outline_unclip_ratio,
            det_runtime=ocr.det_runtime,
            det_threads=det_threads,
            det_precision=ocr.det_precision,
            det_max_enlargement=ocr.det_max_enlargement,
            space_probability=ocr.rec_space_probability,
            rec_runtime=ocr.rec_runtime,
            rec_precision=ocr.rec_precision,
        )

    def warm_up(self) -> None:
        """Load the models now (rapidocr loads them lazily on first use), the detector for a 4:3
        landscape photo's size (OpenVINO compiles it for each size)."""
        self._detector()
        side = _multiple_of_32(self.det_side)
        with self._lock:  # the detector runs one photo at a time, a first photo may be in it
            self._text_map(np.zeros((_multiple_of_32(side * 3 // 4), side, 3), np.uint8))
        self._engine._load_cls_model()
        self._recognizer()

    def _detector(self):
        """rapidocr's text detector, for its pre- and post-processing only: the network runs in
        self._text_map, so the onnxruntime session rapidocr made for it (~50 MB) is let go."""
        detector = self._engine._load_det_model()
        detector.session = None
        return detector

    def _recognizer(self):
        """rapidocr's recogniser with our CTC decoding (spaces) and, with rec_runtime openvino,
        our network in place of its onnxruntime session (which is let go)."""
        rec = self._engine._load_rec_model()
        if not isinstance(rec.postprocess_op, _SpacedDecode):
            with self._lock:
                if not isinstance(rec.postprocess_op, _SpacedDecode):
                    if self._rec_net is not None:
                        rec.session = self._rec_net
                    if self._wide_rec_net is not None:
                        rec.session = WideningRecognizer(rec.session, self._wide_rec_net)
                    rec.postprocess_op = _SpacedDecode(rec.postprocess_op, self.space_probability)
        return rec

    def find(self, bgr: np.ndarray) -> list[LineCandidate]:
        from rapidocr.utils.process_img import get_rotate_crop_image

        det_img = self._detection_copy(bgr)
        # Per axis: the copy's sides are rounded to multiples of 32 on their own.
        scale_y, scale_x = bgr.shape[0] / det_img.shape[0], bgr.shape[1] / det_img.shape[1]
        det_img = pad_thin_strip(det_img, self.det_side)
        detector = self._detector()
        image = detector_image(det_img, self.det_side)
        if image is None:
            return []
        with self._lock:
            # Boxes straight into the original's pixels (rapidocr maps from the map's shape to
            # the shape given), without a round trip through the smaller copy's integers.
            dest = (round(det_img.shape[0] * scale_y), round(det_img.shape[1] * scale_x))
            text_map = self._text_map(image)
            boxes, _scores = detector.postprocess_op(text_map, dest)
        if boxes is None or len(boxes) == 0:
            return []
        boxes = detector.sorted_boxes(np.asarray(boxes, dtype=np.float32))
        outlines = []
        if self._outline_post is not None:
            tight, _ = self._outline_post(text_map, dest)
            outlines = [np.asarray(b, dtype=np.float32) for b in tight]
        candidates = []
        # Crops come from the full-resolution photo: detection ran on a downscaled copy, but
        # recognition of small text needs every pixel.
        height, width = bgr.shape[:2]
        for quad in np.asarray(boxes, dtype=np.float32):
            quad = np.stack([quad[:, 0].clip(0, width), quad[:, 1].clip(0, height)], axis=1)  # not into pad_thin_strip's white
            crop = get_rotate_crop_image(bgr, quad.copy())
            if crop.size == 0 or min(crop.shape[:2]) < 2:
                continue
            crop = _shrink_for_recognition(crop)
            vertical = _is_tall(quad)
            candidates.append(LineCandidate(quad=quad, crop=np.ascontiguousarray(crop), vertical=vertical, flip_vote=0.0,
                                            outline=matching_outline(quad, outlines)))
        if not candidates:
            return []
        cls = self._engine._load_cls_model()([c.crop for c in candidates])
        for c, (label, score) in zip(candidates, cls.cls_res, strict=True):
            c.flip_vote = float(score) if "180" in str(label) else -float(score)
        return candidates

    def _detection_copy(self, bgr: np.ndarray) -> np.ndarray:
        """The photo as handed to detector_image, which itself shrinks it (linear resize) to
        det_side at most and rounds its sides to multiples of 32; an enlarged copy is made at
        that size already (by det_max_enlargement at most)."""
        import cv2

        h, w = bgr.shape[:2]
        factor = self.det_side / max(h, w)
        if factor > 1.0 and self.det_upscale:
            factor = min(factor, self.det_max_enlargement or factor)
            # Straight to the detector's multiple-of-32 size: detector_image resizes no more.
            size = (max(1, _multiple_of_32(int(w * factor))), max(1, _multiple_of_32(int(h * factor))))
            return cv2.resize(bgr, size, interpolation=cv2.INTER_LINEAR)
        if factor < 0.5:
            # Far smaller: average down to twice the size first, so that thin strokes of a
            # camera-size photo survive (a plain linear resize skips pixels).
            size = (max(1, round(w * factor * 2)), max(1, round(h * factor * 2)))
            return cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
        return bgr

    def recognize(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        """(text, score) per crop. rapidocr reads lines in batches of rec_batch_num, sorted by
        width / height, each batch padded to its widest line: the same batches are made here
        (so the same text is read) and spread over det_threads cores."""
        from rapidocr.ch_ppocr_rec import TextRecInput

        if not crops:
            return []
        rec = self._recognizer()
        order = np.argsort(np.array([c.shape[1] / float(c.shape[0]) for c in crops]))
        batches = [order[i:i + rec.rec_batch_num] for i in range(0, len(order), rec.rec_batch_num)]

        def read_batch(indices: np.ndarray) -> list[tuple[str, float]]:
            out = rec(TextRecInput(img=[crops[i] for i in indices], return_word_box=False))
            return [(str(t), float(s)) for t, s in zip(out.txts, out.scores, strict=True)]

        readings: list[tuple[str, float]] = [("", 0.0)] * len(crops)
        if len(batches) == 1 and isinstance(rec.session, WideningRecognizer):
            with rec.session.widened():
                read = [read_batch(batches[0])]
        else:
            read = map_beside(self._rec_pool, read_batch, batches)
        for indices, batch in zip(batches, read, strict=True):
            for i, reading in zip(indices, batch, strict=True):
                readings[i] = reading
        return readings

    def read(
        self,
        bgr: np.ndarray,
        recognize: Recognizer | None = None,
        min_confidence: float = 0.5,
        cjk_context_confidence: float = 0.8,
    ) -> list[TextLine]:
        candidates = self.find(bgr)
        lines = []
        for c, flipped, text, score in resolve_orientation(candidates, recognize or self.recognize):
            text = " ".join(text.split())
            if not text or score < min_confidence:
                continue
            lines.append(TextLine(polygon=reading_polygon(c.shown, c.vertical, flipped), text=text, confidence=round(score, 4)))
        return drop_stray_cjk(lines, cjk_context_confidence)


def _is_cjk(ch: str) -> bool:
    code = ord(ch)
    return 0x3400 <= code <= 0x9FFF or 0xF900 <= code <= 0xFAFF or 0x3040 <= code <= 0x30FF


def drop_stray_cjk(lines: Sequence[TextLine], context_confidence: float = 0.8) -> list[TextLine]:
    """Lines without the one- or two-glyph CJK 'words' that icons are read as (a walking man
    as "穴", an arrow as "个"), unless a CJK line of 3+ glyphs read at context_confidence or
    better shows that CJK text is really there."""
    def glyphs(line: TextLine) -> int:
        return sum(_is_cjk(ch) for ch in line.text)

    cjk_context = any(glyphs(ln) >= 3 and ln.confidence >= context_confidence for ln in lines)
    if cjk_context:
        return list(lines)
    stray = [len(ln.text.replace(" ", "")) <= 2 and glyphs(ln) == len(ln.text.replace(" ", "")) > 0 for ln in lines]
    return [ln for ln, s in zip(lines, stray, strict=True) if not s]


# The recogniser reads 48 px high lines; a crop several times taller is shrunk first with area
# averaging, because rapidocr's own linear resize of a big crop (camera-size photos) aliases.
_REC_HEIGHT = 48


def _shrink_for_recognition(crop: np.ndarray) -> np.ndarray:
    import cv2

    h, w = crop.shape[:2]
    short = min(h, w)  # a tall crop is turned before recognition: its width becomes the height
    if short <= 2 * _REC_HEIGHT:
        return crop
    factor = 2 * _REC_HEIGHT / short
    return cv2.resize(crop, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_AREA)


def _is_tall(quad: np.ndarray) -> bool:
    """Same test rapidocr applies before turning a crop (height/width >= 1.5)."""
    width = int(max(np.linalg.norm(quad[0] - quad[1]), np.linalg.norm(quad[2] - quad[3])))
    height = int(max(np.linalg.norm(quad[0] - quad[3]), np.linalg.norm(quad[1] - quad[2])))
    return width > 0 and height / width >= 1.5

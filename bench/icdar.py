"""ICDAR 2015 incidental scene text (test photos 1-250): word and detection scores for an OCR.

Words: bag of words per photo, case-folded, split at ICDAR 2015 word spotting's separators
(both sides: a trailing 's dropped, '!?.:,*"()·[]/ break words), punctuation trimmed from both
ends, words of at least 3 characters; '###' (illegible) ground truth is not scored, and predicted words lying
mostly inside an illegible region are not counted either way. Detection: predicted word quads
matched one-to-one to ground-truth word quads at IoU >= 0.5 (ICDAR's rule; illegible regions
are don't-care). Lines are split into word quads along the line in proportion to character
counts, since every backend here returns lines.

The 250 photos are split by id parity: odd ids tune settings, even ids only report them.
"""

from __future__ import annotations

import statistics
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench import SHARED

ICDAR_DIR = SHARED / "data" / "icdar2015"
MIN_WORD_CHARS = 3
IOU_MATCH = 0.5
# A predicted word with more than this share of its area inside an illegible region is ignored.
DONT_CARE_OVERLAP = 0.5


def split_ids(half: str) -> list[int]:
    """'tune': odd ids, 'report': even ids, 'all': 1-250."""
    ids = range(1, 251)
    if half == "tune":
        return [i for i in ids if i % 2 == 1]
    if half == "report":
        return [i for i in ids if i % 2 == 0]
    return list(ids)


@dataclass
class GtWord:
    quad: np.ndarray  # 4x2
    text: str
    care: bool


def load_photo(i: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(ICDAR_DIR / "images" / f"img_{i}.jpg").convert("RGB"))


def load_gt(i: int) -> list[GtWord]:
    words = []
    for raw in (ICDAR_DIR / "gt" / f"gt_img_{i}.txt").read_text(encoding="utf-8-sig").splitlines():
        parts = raw.strip().split(",", 8)
        if len(parts) < 9:
            continue
        quad = np.asarray([float(v) for v in parts[:8]], dtype=np.float64).reshape(4, 2)
        text = parts[8]
        words.append(GtWord(quad=quad, text=text, care=text != "###"))
    return words


# ICDAR 2015 word spotting (the RRC's script, include_in_dictionary): a trailing "'s" is dropped
# and these characters separate words, in the ground truth and in what was read alike, so that
# "MARINA:SQUARE" or "giordano/ladies" is two words whichever side wrote it as one.
WORD_SEPARATORS = "'!?.:,*\"()·[]/"


def normalise_word(word: str) -> str:
    word = unicodedata.normalize("NFKC", word).casefold()
    return word.strip("".join(ch for ch in set(word) if not ch.isalnum()))


def scored_words(text: str) -> list[str]:
    """The scored words of one ground-truth transcription or one read word: case-folded,
    split at ICDAR's separators, punctuation trimmed from both ends, >= 3 characters."""
    text = unicodedata.normalize("NFKC", text).casefold()
    if text.endswith("'s"):
        text = text[:-2]
    for ch in WORD_SEPARATORS:
        text = text.replace(ch, " ")
    return [w for w in (normalise_word(part) for part in text.split()) if len(w) >= MIN_WORD_CHARS]


def line_words(polygon: Sequence[Sequence[float]], text: str) -> list[tuple[str, np.ndarray]]:
    """Words of a line with quads cut from the line's quad in proportion to character counts."""
    p = np.asarray(polygon, dtype=np.float64)
    n = max(len(text), 1)
    out = []
    pos = 0
    for word in text.split(" "):
        if word:
            a, b = pos / n, (pos + len(word)) / n
            top = (p[0] + (p[1] - p[0]) * a, p[0] + (p[1] - p[0]) * b)
            bottom = (p[3] + (p[2] - p[3]) * a, p[3] + (p[2] - p[3]) * b)
            out.append((word, np.stack([top[0], top[1], bottom[1], bottom[0]])))
        pos += len(word) + 1
    return out


def _polygon(quad: np.ndarray):
    from shapely.geometry import Polygon

    poly = Polygon(quad)
    return poly if poly.is_valid else poly.buffer(0)


@dataclass
class Counts:
    word_tp: int = 0
    word_pred: int = 0
    word_gt: int = 0
    det_tp: int = 0
    det_pred: int = 0
    det_gt: int = 0
    seconds: list[float] = field(default_factory=list)

    def add(self, other: Counts) -> None:
        for name in ("word_tp", "word_pred", "word_gt", "det_tp", "det_pred", "det_gt"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.seconds += other.seconds

    @staticmethod
    def prf(tp: int, pred: int, gt: int) -> tuple[float, float, float]:
        r = tp / gt if gt else 0.0
        p = tp / pred if pred else 0.0
        return r, p, (2 * r * p / (r + p) if r + p else 0.0)

    @property
    def words(self) -> tuple[float, float, float]:
        return self.prf(self.word_tp, self.word_pred, self.word_gt)

    @property
    def detection(self) -> tuple[float, float, float]:
        return self.prf(self.det_tp, self.det_pred, self.det_gt)


def whole_word(text: str) -> list[str]:
    """The scoring before ICDAR's separators (bench/RESULTS.md rows up to 2026-12-01): a word is
    what lies between spaces, case-folded and trimmed, >= 3 characters."""
    word = normalise_word(text)
    return [word] if len(word) >= MIN_WORD_CHARS else []


def score_photo(
    predicted: Iterable[tuple[str, np.ndarray]],
    gt: Sequence[GtWord],
    words: Callable[[str], list[str]] = scored_words,
) -> Counts:
    """Counts for one photo from predicted (word, quad) pairs, in the photo's pixels."""
    care = [g for g in gt if g.care]
    dont = [_polygon(g.quad) for g in gt if not g.care]
    kept = []
    for word, quad in predicted:
        poly = _polygon(quad)
        if poly.area > 0 and any(poly.intersection(d).area / poly.area > DONT_CARE_OVERLAP for d in dont):
            continue
        kept.append((word, poly))
    c = Counts()
    # Words: multiset intersection of the scored words.
    pred_bag = Counter(w for word, _ in kept for w in words(word))
    gt_bag = Counter(w for g in care for w in words(g.text))
    c.word_tp = sum((pred_bag & gt_bag).values())
    c.word_pred = sum(pred_bag.values())
    c.word_gt = sum(gt_bag.values())
    # Detection: greedy one-to-one matching by IoU, best pairs first.
    gt_polys = [_polygon(g.quad) for g in care]
    pairs = []
    for i, (_, pp) in enumerate(kept):
        for j, gp in enumerate(gt_polys):
            if not pp.intersects(gp):
                continue
            inter = pp.intersection(gp).area
            union = pp.area + gp.area - inter
            if union > 0 and inter / union >= IOU_MATCH:
                pairs.append((inter / union, i, j))
    used_p, used_g = set(), set()
    for _, i, j in sorted(pairs, reverse=True):
        if i not in used_p and j not in used_g:
            used_p.add(i)
            used_g.add(j)
    c.det_tp, c.det_pred, c.det_gt = len(used_p), len(kept), len(gt_polys)
    return c


def resize(rgb: np.ndarray, factor: float) -> np.ndarray:
    import cv2

    if factor == 1.0:
        return rgb
    h, w = rgb.shape[:2]
    interp = cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC
    return cv2.resize(rgb, (round(w * factor), round(h * factor)), interpolation=interp)


def evaluate(read: Callable[[np.ndarray], list], ids: Sequence[int], scale: float = 1.0) -> Counts:
    """Run `read` (rgb -> TextLines, or TextBlocks: anything with polygon and text) on each photo, at `scale` times its size, and score it."""
    total = Counts()
    for i in ids:
        rgb = resize(load_photo(i), scale)
        # CPU time of this process (the OCR runs on one thread): wall time on these shared
        # machines mostly measures the neighbours.
        start = time.process_time()
        lines = read(rgb)
        total.seconds.append(time.process_time() - start)
        predicted = [(w, q / scale) for line in lines for w, q in line_words(line.polygon, line.text)]
        total.add(score_photo(predicted, load_gt(i)))
    return total


def summary_row(label: str, c: Counts) -> list[object]:
    wr, wp, wf = c.words
    dr, dp, df = c.detection
    ms = statistics.median(c.seconds) * 1000 if c.seconds else float("nan")
    return [label, round(wr, 3), round(wp, 3), round(wf, 3), round(dr, 3), round(dp, 3), round(df, 3), round(ms)]


def icdar_available() -> bool:
    return (ICDAR_DIR / "images" / "img_1.jpg").exists()


def photo_path(i: int) -> Path:
    return ICDAR_DIR / "images" / f"img_{i}.jpg"

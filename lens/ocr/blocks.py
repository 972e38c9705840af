"""Group text lines into blocks (a sign, a paragraph) and put both in reading order.

A line's polygon starts at the text's own top-left corner and runs clockwise as the text reads
(what every backend here returns), so rotated text is grouped in its own upright frame: two
lines belong together when they run the same way, are of similar size, sit one under the other
with at most about one line of gap, and overlap along the line.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lens.config import OcrConfig
from lens.ocr.groups import connected_groups
from lens.types import Point, TextBlock, TextLine

MAX_ANGLE_DIFF_DEG = 15.0
# Next line's centre at most this many line heights below (1 = touching lines, ~1.5 = normal
# leading, 2.2 = a blank half line between them).
MAX_LINE_STEP = 2.2
MAX_HEIGHT_RATIO = 1.8
# Words on one row: at most this many heights apart, and this close in height.
SIDE_GAP = 1.0
SAME_ROW_HEIGHT_RATIO = 1.3
# Stacked lines share at least this share of the shorter one's length.
MIN_SHARED_EXTENT = 0.3
# Scripts written without spaces between words: lines join with no space.
_NO_SPACE_RANGES = ((0x3040, 0x30FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF))


@dataclass
class _Geometry:
    angle: float  # reading direction, radians, image frame (y down)
    height: float
    centre: np.ndarray
    u: tuple[float, float]  # extent along the reading direction
    v: float  # centre position across it (downwards in the text's frame)


def _geometry(line: TextLine) -> _Geometry:
    p = np.asarray(line.polygon, dtype=np.float64)
    along = ((p[1] - p[0]) + (p[2] - p[3])) / 2
    angle = math.atan2(along[1], along[0])
    height = (np.linalg.norm(p[3] - p[0]) + np.linalg.norm(p[2] - p[1])) / 2
    centre = p.mean(axis=0)
    return _Geometry(angle=angle, height=max(float(height), 1.0), centre=centre, u=(0.0, 0.0), v=0.0)


def _frame(angle: float) -> tuple[np.ndarray, np.ndarray]:
    ex = np.array([math.cos(angle), math.sin(angle)])
    ey = np.array([-math.sin(angle), math.cos(angle)])  # 90 deg clockwise on screen: "down" for the text
    return ex, ey


def _angle_diff(a: float, b: float) -> float:
    d = abs(a - b) % (2 * math.pi)
    return math.degrees(min(d, 2 * math.pi - d))


def _joins(a: TextLine, ga: _Geometry, b: TextLine, gb: _Geometry) -> bool:
    if _angle_diff(ga.angle, gb.angle) > MAX_ANGLE_DIFF_DEG:
        return False
    if max(ga.height, gb.height) / min(ga.height, gb.height) > MAX_HEIGHT_RATIO:
        return False
    ex, ey = _frame(ga.angle)
    pa = np.asarray(a.polygon) @ np.stack([ex, ey], axis=1)
    pb = np.asarray(b.polygon) @ np.stack([ex, ey], axis=1)
    step = abs(pb[:, 1].mean() - pa[:, 1].mean())
    height = max(ga.height, gb.height)
    if step > MAX_LINE_STEP * height:
        return False
    if step < 0.5 * height:
        # Side by side on one line: join only when the gap is about a word space (0.3-0.6 of
        # the height; 1.5 joined neighbouring signs) and the letters are the same size.
        gap = max(pb[:, 0].min() - pa[:, 0].max(), pa[:, 0].min() - pb[:, 0].max())
        return gap < SIDE_GAP * height and max(ga.height, gb.height) / min(ga.height, gb.height) <= SAME_ROW_HEIGHT_RATIO
    # One under the other: they must share a good part of the shorter line's extent (left-
    # aligned, centred or justified lines all do; two signs placed diagonally do not).
    overlap = min(pa[:, 0].max(), pb[:, 0].max()) - max(pa[:, 0].min(), pb[:, 0].min())
    shorter = min(np.ptp(pa[:, 0]), np.ptp(pb[:, 0]))
    return overlap > MIN_SHARED_EXTENT * shorter


def _joiner(text: str) -> str:
    for ch in text[-1:]:
        if any(lo <= ord(ch) <= hi for lo, hi in _NO_SPACE_RANGES):
            return ""
    return " "


def _block_polygon(lines: Sequence[TextLine], angle: float) -> list[Point]:
    """The block's rectangle in its own frame, corners from its top-left, clockwise."""
    ex, ey = _frame(angle)
    pts = np.concatenate([np.asarray(line.polygon, dtype=np.float64) for line in lines])
    local = pts @ np.stack([ex, ey], axis=1)
    (u1, v1), (u2, v2) = local.min(axis=0), local.max(axis=0)
    corners = [(u1, v1), (u2, v1), (u2, v2), (u1, v2)]
    return [(float(u * ex[0] + v * ey[0]), float(u * ex[1] + v * ey[1])) for u, v in corners]


def group_lines(lines: Sequence[TextLine]) -> list[TextBlock]:
    """Blocks of lines, ids 1..N in reading order (top to bottom, then left to right)."""
    if not lines:
        return []
    geoms = [_geometry(line) for line in lines]
    members = connected_groups(len(lines), lambda i, j: _joins(lines[i], geoms[i], lines[j], geoms[j]))

    drafts = []
    for idx in members:
        # The block's direction: its longest line's (short lines' angles are noisy).
        angle = geoms[max(idx, key=lambda i: len(lines[i].text))].angle
        ex, ey = _frame(angle)
        unit = 0.5 * float(np.median([geoms[i].height for i in idx]))
        idx.sort(key=lambda i: (round(float(geoms[i].centre @ ey) / unit), float(geoms[i].centre @ ex)))
        ordered = [lines[i] for i in idx]
        text = ""
        for k, line in enumerate(ordered):
            same_row = k > 0 and abs(float((geoms[idx[k]].centre - geoms[idx[k - 1]].centre) @ ey)) < 0.5 * geoms[idx[k]].height
            if k:
                text += (_joiner(text) if same_row else "\n")
            text += line.text
        weights = [max(len(line.text), 1) for line in ordered]
        confidence = sum(w * line.confidence for w, line in zip(weights, ordered, strict=True)) / sum(weights)
        polygon = _block_polygon(ordered, angle)
        drafts.append((polygon, text, ordered, confidence))

    # Reading order between blocks, in the image's own frame: rows of blocks top to bottom.
    def top_left(draft) -> tuple[float, float]:
        pts = np.asarray(draft[0])
        return float(pts[:, 1].min()), float(pts[:, 0].min())

    typical = float(np.median([g.height for g in geoms]))
    drafts.sort(key=lambda d: (round(top_left(d)[0] / max(typical, 1.0)), top_left(d)[1]))
    return [
        TextBlock(id=k, polygon=polygon, text=text, lines=ordered, confidence=round(conf, 4))
        for k, (polygon, text, ordered, conf) in enumerate(drafts, start=1)
    ]


def drop_untappable(blocks: Sequence[TextBlock], width: int, height: int, config: OcrConfig) -> list[TextBlock]:
    """Blocks big enough to tap once the photo is shown at config.ui_reference_side, renumbered
    1..N in the same order."""
    scale = config.ui_reference_side / max(width, height, 1)
    kept = []
    for block in blocks:
        pts = np.asarray(block.polygon, dtype=np.float64)
        extent = (pts.max(axis=0) - pts.min(axis=0)) * scale
        if float(extent.max()) >= config.min_tap_px:
            kept.append(block)
    return [b.model_copy(update={"id": k}) for k, b in enumerate(kept, start=1)]

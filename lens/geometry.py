"""Box arithmetic, the one copy: boxes are (x1, y1, x2, y2) in pixels of the image they belong
to (the original, EXIF-rotated photo everywhere outside a stage's working copy)."""

from __future__ import annotations

import numpy as np

from lens.types import Box


def box_area(box: Box) -> float:
    x1, y1, x2, y2 = box
    return max(0.0, x2 - x1) * max(0.0, y2 - y1)


def intersection(a: Box, b: Box) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(0.0, w) * max(0.0, h)


def iou(a: Box, b: Box) -> float:
    inter = intersection(a, b)
    union = box_area(a) + box_area(b) - inter
    return inter / union if union > 0 else 0.0


def clip_box(box: Box, width: int, height: int) -> Box:
    x1, y1, x2, y2 = box
    return (
        float(np.clip(x1, 0, width)),
        float(np.clip(y1, 0, height)),
        float(np.clip(x2, 0, width)),
        float(np.clip(y2, 0, height)),
    )


def scale_box(box: Box, factor: float, width: int, height: int) -> Box:
    """Map a box from a resized image back to the original, clipped to its bounds."""
    x1, y1, x2, y2 = (v / factor for v in box)
    return (
        float(min(max(x1, 0.0), width)),
        float(min(max(y1, 0.0), height)),
        float(min(max(x2, 0.0), width)),
        float(min(max(y2, 0.0), height)),
    )

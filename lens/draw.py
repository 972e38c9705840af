"""Pictures of a result: numbered dots and boxes on regions, outlines on text, a heatmap."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from lens.types import AnalyzeResult

REGION_COLOURS = {"object": (255, 64, 64), "salient": (64, 160, 255)}
TEXT_COLOUR = (255, 255, 255)


def _font(size: int) -> ImageFont.ImageFont:
    for name in ("DejaVuSans-Bold.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default()


def saliency_to_uint8(saliency_map: np.ndarray) -> np.ndarray:
    m = np.asarray(saliency_map, dtype=np.float32)
    lo, hi = float(m.min()), float(m.max())
    scaled = np.zeros_like(m) if hi <= lo else (m - lo) / (hi - lo)
    return (scaled * 255.0 + 0.5).astype(np.uint8)


def write_saliency_png(saliency_map: np.ndarray, path: str | Path) -> None:
    """The map as an 8-bit grayscale PNG at the map's (= the photo's) size."""
    Image.fromarray(saliency_to_uint8(saliency_map), mode="L").save(path)


def draw_result(
    rgb: np.ndarray,
    result: AnalyzeResult,
    path: str | Path,
    heatmap: np.ndarray | None = None,
) -> None:
    img = Image.fromarray(rgb).convert("RGB")
    if heatmap is not None:
        heat = saliency_to_uint8(heatmap)
        if heat.shape[:2] != rgb.shape[:2]:
            heat = np.asarray(Image.fromarray(heat).resize(img.size, Image.Resampling.BILINEAR))
        red = Image.new("RGB", img.size, (255, 0, 0))
        img = Image.composite(red, img, Image.fromarray((heat * 0.6).astype(np.uint8), mode="L"))
    draw = ImageDraw.Draw(img)
    scale = max(img.size) / 1000.0
    width = max(2, round(3 * scale))
    radius = max(8, round(14 * scale))
    font = _font(max(10, round(16 * scale)))
    for block in result.text_blocks:
        if len(block.polygon) >= 3:
            draw.polygon([tuple(p) for p in block.polygon], outline=TEXT_COLOUR, width=max(1, width - 1))
    for number, region in enumerate(result.regions, start=1):
        colour = REGION_COLOURS.get(region.kind, (255, 255, 255))
        x1, y1, x2, y2 = region.box
        draw.rectangle((x1, y1, x2, y2), outline=colour, width=width)
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=colour, outline=(255, 255, 255), width=2)
        draw.text((cx, cy), str(number), fill=(255, 255, 255), font=font, anchor="mm")
    img.save(path, quality=90)

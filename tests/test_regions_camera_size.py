"""A camera-size photo (4032 x 3024) gets the same dots as its 1024 px copy: the region branch
works on a copy of at most limits.work_max_side, and every measure in it is relative to the
photo's size. Real photos (OSIE, upscaled with PIL as a phone camera's 12 MP), real models."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lens.geometry import iou
from lens.image import DecodedImage

CAMERA = (4032, 3024)
COPY = (1024, 768)


def _decoded(im: Image.Image) -> DecodedImage:
    rgb = np.asarray(im.convert("RGB"))
    return DecodedImage(rgb=rgb, sha256="0" * 64, format="JPEG")


def _dots(pipeline, im: Image.Image) -> list[tuple[float, float, float, float]]:
    """Dot boxes as fractions of the photo's width and height, best first."""
    from lens.pipeline import AnalyzeOptions, Timer

    image = _decoded(im)
    regions = pipeline.find_regions(image, AnalyzeOptions(search=False, text=False), Timer())
    return [(r.box[0] / image.width, r.box[1] / image.height, r.box[2] / image.width, r.box[3] / image.height)
            for r in regions]


# 37 = OSIE 1038, whose top dot was a colour segment of one copy only until segments had to be
# stable under a one-grey-level dither (RegionConfig.segment_dithers).
@pytest.mark.parametrize("index", [0, 37, 101, 333, 517])
def test_camera_size_photo_gets_the_same_dots_as_its_1024_copy(settings, osie_photos, index):
    from lens.pipeline import Pipeline

    pipeline = Pipeline(settings)
    camera = Image.open(osie_photos[index]).convert("RGB").resize(CAMERA, Image.Resampling.BICUBIC)
    copy = camera.resize(COPY, Image.Resampling.LANCZOS)
    big, small = _dots(pipeline, camera), _dots(pipeline, copy)
    # The same dots; two near-tied ones (two people scoring 8.16 and 8.09) may swap places.
    assert big and len(big) == len(small), (big, small)
    for a in big:
        assert max(iou(a, b) for b in small) >= 0.8, (big, small)


def test_camera_size_dots_are_never_stacked(settings, osie_photos):
    from lens.pipeline import Pipeline

    camera = Image.open(osie_photos[42]).convert("RGB").resize(CAMERA, Image.Resampling.BICUBIC)
    dots = _dots(Pipeline(settings), camera)
    gap = settings.regions.min_dot_distance * float(np.hypot(1.0 * CAMERA[0], 1.0 * CAMERA[1]))
    centres = [((a[0] + a[2]) / 2 * CAMERA[0], (a[1] + a[3]) / 2 * CAMERA[1]) for a in dots]
    for i, p in enumerate(centres):
        for q in centres[i + 1 :]:
            assert np.hypot(p[0] - q[0], p[1] - q[1]) >= gap - 1e-6

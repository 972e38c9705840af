"""PP-OCRv6 (rapidocr) on real sign text rendered with Debian fonts over real OSIE photos."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `bench` lives at the repo root

from bench.bench_ocr import cer, make_case  # noqa: E402
from lens.config import load_settings  # noqa: E402
from lens.ocr import create_ocr  # noqa: E402
from lens.ocr.blocks import group_lines  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def rapid_ocr():
    ocr = create_ocr(load_settings(ocr={"backend": "rapidocr"}))
    ocr.warm_up()
    return ocr


def _read(ocr, case) -> tuple[str, list]:
    blocks = group_lines(ocr.read(case.rgb))
    return " ".join(b.text.replace("\n", " ") for b in blocks), blocks


@pytest.mark.parametrize(
    ("lang", "condition", "max_cer"),
    [
        ("en", "straight", 0.05),
        ("en", "rot90", 0.05),
        ("en", "rot180", 0.05),
        ("en", "small", 0.1),
        ("pt", "straight", 0.05),
        ("pt", "rot270", 0.05),
        ("fr", "tilt", 0.1),
        ("de", "rot180", 0.05),
        ("zh", "straight", 0.05),
        ("zh", "rot90", 0.05),
        ("ja", "rot180", 0.05),
        ("ja", "small", 0.1),
    ],
)
def test_rapidocr_reads_rendered_sign(rapid_ocr, lang, condition, max_cer):
    case = make_case(lang, condition, 0)
    text, blocks = _read(rapid_ocr, case)
    assert cer(text, " ".join(case.lines), lang) <= max_cer, text
    # The sign is one block, and it lies where the text was drawn.
    assert len(blocks) == 1, [b.text for b in blocks]
    if case.box is not None:
        pts = np.asarray(blocks[0].polygon)
        x1, y1, x2, y2 = case.box
        assert pts[:, 0].min() > x1 - 40 and pts[:, 0].max() < x2 + 40
        assert pts[:, 1].min() > y1 - 40 and pts[:, 1].max() < y2 + 40


# Which way the text runs on screen (angle of the polygon's first edge, y down).
@pytest.mark.parametrize(("condition", "angle"), [("straight", 0), ("rot90", -90), ("rot180", 180), ("rot270", 90)])
def test_line_polygon_starts_at_the_texts_own_top_left(rapid_ocr, condition, angle):
    case = make_case("en", condition, 1)
    # Only the rendered sign's lines: OSIE photos carry some text of their own.
    lines = [line for line in rapid_ocr.read(case.rgb) if line.text in case.lines]
    assert len(lines) == len(case.lines)
    for line in lines:
        p = np.asarray(line.polygon)
        measured = math.degrees(math.atan2(p[1][1] - p[0][1], p[1][0] - p[0][0]))
        assert abs((measured - angle + 180) % 360 - 180) < 10, (line.text, measured)


def test_rapidocr_reads_nothing_on_a_photo_without_text(rapid_ocr):
    from bench.bench_ocr import load_photo

    flat = np.full((300, 400, 3), 128, dtype=np.uint8)
    assert rapid_ocr.read(flat) == []
    assert isinstance(rapid_ocr.read(load_photo("1001.jpg")), list)


def test_rapidocr_declares_what_it_reads(rapid_ocr):
    assert {"en", "pt", "fr", "de", "zh", "ja"} <= rapid_ocr.languages
    assert "vi" not in rapid_ocr.languages and "ko" not in rapid_ocr.languages


def test_pipeline_reads_and_translates_text_in_a_photo():
    from PIL import Image

    from lens.image import decode_image
    from lens.pipeline import AnalyzeOptions, Pipeline

    case = make_case("pt", "straight", 0)
    import io

    buf = io.BytesIO()
    Image.fromarray(case.rgb).save(buf, format="PNG")
    pipeline = Pipeline(load_settings(detect={"backend": "none"}, saliency={"backend": "none"}))
    result = pipeline.analyze(decode_image(buf.getvalue()), AnalyzeOptions(target_lang="en", regions=False))
    assert len(result.text_blocks) == 1
    block = result.text_blocks[0]
    assert block.language == "pt"
    assert block.translation_language == "en" and "Central Market" in block.translation


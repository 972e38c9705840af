"""The PP-OCRv6 + Tesseract line hybrid on Vietnamese and Korean signs (which PP-OCRv6 cannot read)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `bench` lives at the repo root

from bench.bench_ocr import cer, make_case  # noqa: E402
from lens.config import load_settings  # noqa: E402
from lens.errors import ModelMissingError  # noqa: E402
from lens.ocr import create_ocr  # noqa: E402
from lens.ocr.blocks import group_lines  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def tesseract_ocr():
    return create_ocr(load_settings(ocr={"backend": "tesseract", "options": {"languages": ["vi", "ko"]}}))


@pytest.mark.parametrize(("lang", "condition"), [("vi", "straight"), ("vi", "rot180"), ("ko", "straight"), ("ko", "rot90")])
def test_tesseract_hybrid_reads_vietnamese_and_korean_signs(tesseract_ocr, lang, condition):
    case = make_case(lang, condition, 0)
    text = " ".join(b.text for b in group_lines(tesseract_ocr.read(case.rgb)))
    assert cer(text, " ".join(case.lines), lang) <= 0.05, text


def test_tesseract_declares_its_languages(tesseract_ocr):
    assert tesseract_ocr.languages == {"vi", "ko"}


@pytest.mark.parametrize(("languages", "words"), [(["xx"], "no Tesseract language"), (["it"], "apt-get install tesseract-ocr-ita")])
def test_tesseract_missing_language_names_the_fix(languages, words, tmp_path):
    settings = load_settings(ocr={"backend": "tesseract", "options": {"languages": languages, "tessdata_dir": tmp_path if languages == ["it"] else Path("/usr/share/tesseract-ocr/5/tessdata")}})
    with pytest.raises(ModelMissingError, match=words):
        create_ocr(settings)

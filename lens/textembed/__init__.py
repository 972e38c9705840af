"""Sentence embeddings of catalog text (titles, descriptions) and of text queries.

A stage of its own, loaded only by a text search (never by analyze): `create_text_embedder`
imports the chosen backend on first use.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from lens.config import Settings
from lens.registry import load_backend

BACKENDS = {
    "minilm": "lens.textembed.minilm:MiniLmTextEmbedder",
}


class TextEmbedder(Protocol):
    name: str
    version: str
    dim: int

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """(N, dim) float32, L2-normalised, one row per text."""
        ...


def create_text_embedder(settings: Settings) -> TextEmbedder:
    return load_backend("textembed", settings.text_search.backend, BACKENDS)(settings)

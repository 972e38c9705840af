"""Where a catalog's vectors live, behind one small Protocol (VectorStore).

The catalog's metadata store (SQLite, or PostgreSQL) is the truth: it holds every image's
vector. A vector store is derived from it and is only asked for nearest neighbours, so whatever
it returns is joined against the metadata and an id it still holds for a removed image never
reaches a user. Its writes follow the catalog's transaction: changes are buffered or applied in
memory by `add`/`remove`, made durable by `prepare_save` *before* the metadata commits and
finished by `finish_save` after it; `discard` forgets them.

Backends (config `vectors.backend`, checked against BACKENDS):
- "faiss": an in-process faiss index per process, saved as one file per catalog generation
  beside the metadata (lens/index/vectors.py). The default, for one machine.
- "milvus": a Milvus collection reached by URI (a standalone server in a fleet, or a Milvus
  Lite file for tests), HNSW or IVF by config; every worker searches the one collection.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from lens.config import Settings
from lens.errors import LensError
from lens.registry import load_backend

BACKENDS = {
    "faiss": "lens.index.stores.faiss_store:FaissStore",
    "milvus": "lens.index.stores.milvus_store:MilvusStore",
}


class VectorStoreUnavailableError(LensError):
    """The vector store (a Milvus server) cannot be reached; the write was not made."""

    http_status = 503
    code = "vectors_unavailable"
    retryable = True


class VectorSource(Protocol):
    """What a store may read from the catalog's metadata: the truth it is derived from."""

    def image_count(self) -> int: ...

    def all_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids int64 (N,), vectors float32 (N, dim)) of every image, committed or in the open
        transaction."""
        ...


class VectorStore(Protocol):
    name: str
    # The index kind searched now ("flat", "hnsw", "ivf"), for stats and the catalog's meta.
    kind: str

    @property
    def size(self) -> int:
        """Vectors the store holds (HNSW in faiss also counts removed ones until a rebuild)."""
        ...

    def load(self, generation: int, meta: dict) -> None:
        """Hold exactly the vectors of the committed `generation` (the catalog's meta says the
        index kind it was saved with)."""
        ...

    def begin(self) -> None:
        """The catalog took its write lock (nothing is changed yet): repair what a writer killed
        between prepare_save and finish_save left behind."""
        ...

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...

    def remove(self, ids: list[int]) -> None: ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each (N, k'); id -1 pads a row with fewer hits."""
        ...

    def prepare_save(self, generation: int, meta: dict) -> None:
        """Make the transaction's changes durable as `generation`, before the metadata commits.
        Raise to refuse the save (the catalog then rolls back)."""
        ...

    def finish_save(self, generation: int) -> None:
        """After the metadata committed `generation`: drop what is no longer needed."""
        ...

    def discard(self, generation: int, meta: dict) -> None:
        """Forget the open transaction's changes; hold `generation` again."""
        ...

    def close(self) -> None: ...


def create_vector_store(settings: Settings, folder: Path, dim: int, source: VectorSource) -> VectorStore:
    """The configured backend's store for the catalog in `folder` (metadata in `source`)."""
    cls = load_backend("vectors", settings.vectors.backend, BACKENDS)
    return cls(settings, folder, dim, source)


__all__ = ["BACKENDS", "VectorSource", "VectorStore", "VectorStoreUnavailableError", "create_vector_store"]

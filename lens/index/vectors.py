"""The faiss side of a catalog: an IndexIDMap2 over inner product (vectors are L2-normalised, so
scores are cosine similarities), flat (exact) for small catalogs, HNSW or IVF for large ones.

Removal: flat and IVF delete vectors in place; HNSW cannot, so its removed vectors stay until
the next rebuild and searches over-fetch by that many. Whatever faiss returns is joined against
the SQLite items table, which is the truth, so a removed item never reaches a user either way.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from lens.config import IndexConfig

Kind = Literal["flat", "hnsw", "ivf"]


def choose_kind(config: IndexConfig, count: int) -> Kind:
    if config.kind != "auto":
        return config.kind
    return "flat" if count < config.hnsw_threshold else "hnsw"


def ivf_list_count(count: int) -> int:
    # ~4 sqrt(n) lists, at least 39 training points per list (faiss warns below that), at most
    # 1024: k-means beyond that took minutes per rebuild on 2 cores.
    return max(1, min(int(4 * math.sqrt(max(count, 1))), count // 39, 1024))


def training_sample(vectors: np.ndarray, lists: int) -> np.ndarray:
    """At most 64 vectors per list: enough for k-means, and training stays seconds long."""
    limit = 64 * lists
    if len(vectors) <= limit:
        return vectors
    rows = np.random.default_rng(0).choice(len(vectors), limit, replace=False)
    return vectors[np.sort(rows)]


class VectorIndex:
    def __init__(self, dim: int, kind: Kind, config: IndexConfig, index=None) -> None:
        self.dim = dim
        self.kind = kind
        self.config = config
        self._index = index
        # Vectors still inside an HNSW graph whose items were removed.
        self.dead = 0

    # -- building --------------------------------------------------------------------------
    @classmethod
    def build(cls, dim: int, kind: Kind, config: IndexConfig, ids: np.ndarray, vectors: np.ndarray) -> VectorIndex:
        """A fresh index holding exactly (ids, vectors)."""
        import faiss

        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, dim)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if kind == "flat":
            inner = faiss.IndexFlatIP(dim)
        elif kind == "hnsw":
            inner = faiss.IndexHNSWFlat(dim, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = config.hnsw_ef_construction
        elif kind == "ivf":
            quantizer = faiss.IndexFlatIP(dim)
            lists = ivf_list_count(len(ids))
            inner = faiss.IndexIVFFlat(quantizer, dim, lists, faiss.METRIC_INNER_PRODUCT)
            if len(ids):
                inner.train(training_sample(vectors, lists))
        else:
            raise ValueError(f"unknown index kind {kind!r}")
        index = cls(dim, kind, config, faiss.IndexIDMap2(inner))
        if len(ids):
            index._index.add_with_ids(vectors, ids)
        return index

    @classmethod
    def from_bytes(cls, data: np.ndarray, kind: Kind, config: IndexConfig) -> VectorIndex:
        import faiss

        index = faiss.deserialize_index(data)
        return cls(index.d, kind, config, index)

    def to_bytes(self) -> np.ndarray:
        import faiss

        return faiss.serialize_index(self._index)

    # -- changes ---------------------------------------------------------------------------
    @property
    def size(self) -> int:
        """Vectors in the index, including HNSW's dead ones."""
        return int(self._index.ntotal)

    @property
    def trained(self) -> bool:
        return bool(self._index.is_trained)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self._index.add_with_ids(
            np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim),
            np.ascontiguousarray(ids, dtype=np.int64),
        )

    def remove(self, ids: list[int]) -> None:
        if self.kind == "hnsw":
            self.dead += len(ids)
            return
        self._index.remove_ids(np.asarray(ids, dtype=np.int64))

    # -- search ----------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each (N, k'); id -1 pads when the index holds fewer vectors."""
        import faiss

        inner = faiss.downcast_index(self._index.index)
        if self.kind == "hnsw":
            inner.hnsw.efSearch = max(self.config.hnsw_ef_search, k + self.dead)
        elif self.kind == "ivf":
            inner.nprobe = self.config.ivf_nprobe
        fetch = min(k + self.dead, max(self.size, 1))
        return self._index.search(np.ascontiguousarray(queries, dtype=np.float32), fetch)

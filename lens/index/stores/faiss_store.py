"""The default vector store: a faiss index in each process's memory (lens/index/vectors.py),
saved as `<catalog_dir>/vectors-<generation>.faiss` before the metadata commits that
generation (temp, fsync, rename), so a writer killed before the commit leaves the previous
generation's file and rows exactly as they were. A missing or mismatched file is rebuilt from
the vectors in the metadata."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from lens.config import Settings
from lens.files import atomic_write_bytes
from lens.index.stores import VectorSource
from lens.index.vectors import VectorIndex, choose_kind

log = logging.getLogger(__name__)

# Rebuild an HNSW index at save time once this share of its vectors belongs to removed items.
HNSW_DEAD_SHARE = 0.1


class FaissStore:
    name = "faiss"

    def __init__(self, settings: Settings, folder: Path, dim: int, source: VectorSource) -> None:
        self.settings = settings
        self.folder = folder
        self.dim = dim
        self.source = source
        self._index: VectorIndex | None = None
        # The generation prepare_save wrote and no commit has confirmed yet.
        self._prepared: int | None = None

    @property
    def kind(self) -> str:
        return self._index.kind if self._index is not None else choose_kind(self.settings.index, 0)

    @property
    def size(self) -> int:
        return self._index.size if self._index is not None else 0

    def _file(self, generation: int) -> Path:
        return self.folder / f"vectors-{generation}.faiss"

    def load(self, generation: int, meta: dict) -> None:
        path = self._file(generation)
        live = self.source.image_count()
        kind = meta.get("index_kind") or choose_kind(self.settings.index, live)
        if path.is_file():
            index = VectorIndex.from_bytes(np.fromfile(path, dtype=np.uint8), kind, self.settings.index)
            index.dead = max(0, index.size - live) if kind == "hnsw" else 0
            if index.dim == self.dim and (kind == "hnsw" or index.size == live):
                self._index = index
                return
            log.warning("%s does not match the items table; rebuilding it from the catalog", path)
        elif generation > 0:
            log.warning("%s is missing; rebuilding the index from the catalog", path)
        self._index = self._rebuild(kind)

    def _rebuild(self, kind: str) -> VectorIndex:
        ids, vectors = self.source.all_vectors()
        return VectorIndex.build(self.dim, kind, self.settings.index, ids, vectors)

    def begin(self) -> None:
        # Nothing to repair: a killed writer's file of an uncommitted generation is never read.
        return None

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if self._index.kind == "ivf" and not self._index.trained:
            # An IVF index learns its lists from data; the first vectors (already in the
            # transaction's rows) train it.
            self._index = self._rebuild("ivf")
        else:
            self._index.add(np.asarray(ids, dtype=np.int64), vectors)

    def remove(self, ids: list[int]) -> None:
        self._index.remove(ids)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self._index.search(queries, k)

    def prepare_save(self, generation: int, meta: dict) -> None:
        self._index = self._index_to_save(self.source.image_count(), meta)
        self._prepared = generation
        atomic_write_bytes(self._file(generation), self._index.to_bytes())

    def _index_to_save(self, count: int, meta: dict) -> VectorIndex:
        """The current index, or a rebuilt one when its kind should change or HNSW has too many
        removed vectors, or IVF has outgrown the lists it was trained with."""
        kind = choose_kind(self.settings.index, count)
        current = self._index
        stale = (
            kind != current.kind
            or (kind == "hnsw" and current.dead > HNSW_DEAD_SHARE * max(current.size, 1))
            or (kind == "ivf" and count > 4 * max(meta.get("ivf_trained_on", 0), 1))
        )
        if not stale:
            return current
        log.info("rebuilding the %s index over %d items", kind, count)
        if kind == "ivf":
            meta["ivf_trained_on"] = count
        return self._rebuild(kind)

    def finish_save(self, generation: int) -> None:
        self._prepared = None
        # Keep the previous generation too: a reader may be loading it right now.
        for old in self.folder.glob("vectors-*.faiss"):
            stem = old.stem.removeprefix("vectors-")
            if stem.isdigit() and int(stem) < generation - 1:
                old.unlink(missing_ok=True)

    def discard(self, generation: int, meta: dict) -> None:
        # A save whose commit failed left the file of a generation the metadata does not have.
        # With a folder per machine (the PostgreSQL catalog) another worker may commit that
        # generation number with other vectors, and an HNSW file is not checked by its size:
        # this process must never load the stale one.
        if self._prepared is not None and self._prepared > generation:
            self._file(self._prepared).unlink(missing_ok=True)
        self._prepared = None
        self.load(generation, meta)

    def close(self) -> None:
        self._index = None

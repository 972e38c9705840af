"""The catalog's second index: a sentence vector and the keyword postings of every item's text
(its title and the descriptive fields of `extra`), beside the image index.

    <catalog_dir>/text-index.sqlite   item_id, digest of its text, its vector; meta

The catalog stays the truth. Before each text search the index is synced with it: when the
catalog has committed writes since the last sync (its `writes` counter, bumped by every add,
update and remove), items whose text changed are embedded again, removed items are dropped and
new ones added; nothing else is re-embedded (a digest per item says what changed). A missing
or unreadable file, or one written by another text embedder, is rebuilt from the catalog. So a
write never pays for the text model, and analyze never loads it.

Scoring (docs/search.md): an item's text score is
    embedding_weight * cosine(query, item) + (1 - embedding_weight) * keyword score
where the keyword score is lens.index.keywords' typo-tolerant word match in [0, 1].
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lens.config import TextSearchConfig
from lens.errors import LensError
from lens.index.keywords import KeywordIndex

log = logging.getLogger(__name__)

TEXT_INDEX_FILE = "text-index.sqlite"
# The fields of an item's `extra` that describe it in words (a string, or a list of strings).
TEXT_FIELDS = ("description", "summary", "brand", "category", "tags", "keywords")

SCHEMA = """
CREATE TABLE IF NOT EXISTS text_vectors (
    item_id INTEGER PRIMARY KEY,
    digest TEXT NOT NULL,
    vector BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def item_description(extra: dict[str, Any] | None) -> str:
    """The descriptive text of an item's `extra` (TEXT_FIELDS, in that order)."""
    parts: list[str] = []
    for name in TEXT_FIELDS:
        value = (extra or {}).get(name)
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, list):
            parts += [v for v in value if isinstance(v, str)]
    return " ".join(p.strip() for p in parts if p.strip())


def embedding_text(title: str, description: str) -> str:
    """What the sentence model reads for an item: its title, then its description."""
    return f"{title}. {description}" if title and description else title or description


class NoCatalogError(LensError):
    """A text search with no catalog built: nothing to search (a 409, not a server fault)."""

    exit_code = 2
    http_status = 409
    code = "no_catalog"


@dataclass
class TextHit:
    item_id: int
    score: float
    embedding: float
    keyword: float


class TextIndex:
    """One catalog's text vectors and keyword postings (see the module docstring)."""

    def __init__(self, folder: Path, embedder, config: TextSearchConfig) -> None:
        self.folder = folder
        self.embedder = embedder
        self.config = config
        self._lock = threading.Lock()
        self._synced_writes: tuple | None = None
        self._ids = np.zeros(0, dtype=np.int64)
        self._vectors = np.zeros((0, int(embedder.dim)), dtype=np.float32)
        self._keywords = KeywordIndex([], [])

    @property
    def path(self) -> Path:
        return self.folder / TEXT_INDEX_FILE

    def __len__(self) -> int:
        return len(self._ids)

    # -- keeping in step with the catalog -------------------------------------------------------
    def sync(self, catalog) -> bool:
        """Bring the index up to the catalog's last committed state; True when it changed."""
        with self._lock:
            # Which catalog (a folder rebuilt from scratch counts its writes from 0 again) and
            # which of its states (read from the catalog's own database: SQLite or PostgreSQL).
            writes = (catalog.meta.get("created_at"), catalog.committed_writes())
            if writes == self._synced_writes:
                return False
            items = catalog.item_texts()
            with contextlib.closing(self._connect()) as conn:
                stored = self._stored_rows(conn)
                texts = {item_id: embedding_text(title, description) for item_id, title, description in items}
                digests = {item_id: self._digest(text) for item_id, text in texts.items()}
                stale = [i for i, d in digests.items() if stored.get(i, (None,))[0] != d]
                gone = [i for i in stored if i not in digests]
                if stale or gone:
                    vectors = self.embedder.embed_texts([texts[i] for i in stale]) if stale else None
                    conn.execute("BEGIN IMMEDIATE")
                    conn.executemany("DELETE FROM text_vectors WHERE item_id = ?", [(i,) for i in gone])
                    if vectors is not None:
                        conn.executemany(
                            "INSERT OR REPLACE INTO text_vectors (item_id, digest, vector) VALUES (?, ?, ?)",
                            [(i, digests[i], np.asarray(v, dtype=np.float32).tobytes())
                             for i, v in zip(stale, vectors, strict=True)])
                    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('embedder', ?)",
                                 (self._embedder_tag(),))
                    conn.execute("COMMIT")
                    log.info("text index: %d item(s) embedded, %d removed", len(stale), len(gone))
                    for i, v in zip(stale, vectors if vectors is not None else [], strict=True):
                        stored[i] = (digests[i], np.asarray(v, dtype=np.float32))
                    for i in gone:
                        stored.pop(i, None)
            order = sorted(texts)
            self._ids = np.asarray(order, dtype=np.int64)
            dim = int(self.embedder.dim)
            self._vectors = (np.stack([stored[i][1] for i in order]).astype(np.float32)
                             if order else np.zeros((0, dim), dtype=np.float32))
            by_id = {item_id: (title, description) for item_id, title, description in items}
            self._keywords = KeywordIndex([by_id[i][0] for i in order], [by_id[i][1] for i in order])
            self._synced_writes = writes
            return True

    def _embedder_tag(self) -> str:
        return json.dumps({"name": self.embedder.name, "version": self.embedder.version, "dim": int(self.embedder.dim)})

    def _digest(self, text: str) -> str:
        return hashlib.sha256(f"{self._embedder_tag()}\n{text}".encode()).hexdigest()[:24]

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = self._open()
        except sqlite3.DatabaseError as exc:
            log.warning("%s is unreadable (%s); rebuilding the text index", self.path, exc)
            self.path.unlink(missing_ok=True)
            conn = self._open()
        return conn

    def _open(self) -> sqlite3.Connection:
        self.folder.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(SCHEMA)
        return conn

    def _stored_rows(self, conn: sqlite3.Connection) -> dict[int, tuple[str, np.ndarray]]:
        row = conn.execute("SELECT value FROM meta WHERE key = 'embedder'").fetchone()
        if row is not None and row[0] != self._embedder_tag():
            log.info("the text index was built with another text embedder; rebuilding it")
            conn.execute("DELETE FROM text_vectors")
            return {}
        dim = int(self.embedder.dim)
        out = {}
        for item_id, digest, blob in conn.execute("SELECT item_id, digest, vector FROM text_vectors"):
            vector = np.frombuffer(blob, dtype=np.float32)
            if vector.size == dim:
                out[int(item_id)] = (digest, vector)
        return out

    # -- scoring -------------------------------------------------------------------------------
    def score_all(self, query: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(item ids, cosine, keyword score) of every item for `query` (call sync first)."""
        with self._lock:
            ids, vectors, keywords = self._ids, self._vectors, self._keywords
        if len(ids) == 0:
            empty = np.zeros(0, dtype=np.float32)
            return ids, empty, empty
        query_vector = self.embedder.embed_texts([query])[0]
        cosine = np.clip(vectors @ query_vector, 0.0, 1.0)
        return ids, cosine, keywords.scores(query)

    def fuse(self, cosine: np.ndarray, keyword: np.ndarray) -> np.ndarray:
        weight = self.config.embedding_weight
        return weight * cosine + (1.0 - weight) * keyword

    def search(self, query: str, k: int, restrict: list[int] | None = None) -> list[TextHit]:
        """The k best items for `query` by fused score (>= config.min_score), best first.
        `restrict`: score only these item ids (a multisearch shortlist), no floor applied."""
        ids, cosine, keyword = self.score_all(query)
        fused = self.fuse(cosine, keyword)
        rows = np.arange(len(ids))
        if restrict is not None:
            wanted = np.isin(ids, np.asarray(restrict, dtype=np.int64))
            rows = rows[wanted]
        else:
            rows = rows[fused >= self.config.min_score]
        rows = rows[np.argsort(-fused[rows], kind="stable")][:k]
        return [TextHit(int(ids[r]), float(fused[r]), float(cosine[r]), float(keyword[r])) for r in rows]

"""A catalog on disk: item metadata and each item's vector in SQLite, a faiss index derived from
those vectors, and a JSON file naming the embedder the vectors came from.

    <catalog_dir>/catalog.json          embedder name/version/dim, index kind, generation
    <catalog_dir>/catalog.sqlite        items (+ vectors as float32 blobs), meta(generation)

An item may have several reference images (a product photographed from the front, on the shelf,
in hand): each image is one row of `items` with its own vector; the item's own row has
parent_id NULL and carries the metadata, the others point at it (parent_id). Search scores an
item by its best image and lists it once.
    <catalog_dir>/vectors-<gen>.faiss   the faiss index of that generation
    <catalog_dir>/thumbs/<id>.jpg       256 px thumbnails the UI shows
    <catalog_dir>/images/               copies of images that were added as bytes
The table `local_features` holds each image's RootSIFT keypoints for re-ranking (by content
hash, with the settings they were computed with), computed when the image is added, while its
pixels are decoded anyway, so that no query pays for them (lens.index.rerank).

SQLite is the truth. Changes (add, update, remove) go into one open SQLite transaction and
become durable and visible to other processes on `save()`, which (1) writes the next
generation's faiss file atomically (temp, fsync, rename), (2) commits the SQLite transaction
that records that generation, (3) rewrites catalog.json, (4) deletes older faiss files. A
writer killed anywhere before (2) leaves the previous generation exactly as it was (its faiss
file is still there, the uncommitted SQLite changes roll back); after (2) the new one is
complete. Should a generation's faiss file ever be missing, it is rebuilt from the vectors in
SQLite. One process writes at a time (SQLite's write lock); any number read.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from lens.config import Settings
from lens.errors import BadInputError, LensError
from lens.files import (
    atomic_output,
    atomic_write_bytes,
    atomic_write_json,
    remove_stale_temporaries,
)
from lens.image import DecodedImage, decode_image
from lens.index.head import ProjectionHead, head_signature, load_head
from lens.index.stores import VectorStore, create_vector_store
from lens.index.vectors import VectorIndex, choose_kind
from lens.types import Match

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
META_FILE = "catalog.json"
DB_FILE = "catalog.sqlite"
THUMBNAIL_SIDE = 256
# Searches that lose hits to vectors the metadata does not have ask again for 4x as many, up
# to this many times and this many hits (Milvus' own topk limit).
SEARCH_REFETCHES = 3
MAX_FETCH = 16384
EDITABLE_FIELDS = ("title", "url", "external_id", "extra")

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    content_hash TEXT NOT NULL UNIQUE,
    external_id TEXT,
    title TEXT NOT NULL DEFAULT '',
    url TEXT,
    image_path TEXT,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    extra TEXT NOT NULL DEFAULT '{}',
    added_at REAL NOT NULL,
    vector BLOB NOT NULL,
    parent_id INTEGER
);
CREATE INDEX IF NOT EXISTS items_external_id ON items(external_id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS local_features (content_hash TEXT PRIMARY KEY, params TEXT NOT NULL, data BLOB NOT NULL);
"""
# Schema 2 added items.parent_id (several reference images per item); _migrate upgrades a
# schema-1 file in place (every existing row stays an item with one image).
SCHEMA_VERSION = 2
ITEM_COLUMNS = "id, content_hash, external_id, title, url, image_path, width, height, extra, added_at, parent_id"


class CatalogError(LensError):
    code = "catalog_error"


class CatalogMismatchError(CatalogError):
    """The catalog was built with another embedder; its vectors cannot be compared."""

    exit_code = 2
    http_status = 409
    code = "catalog_embedder_mismatch"


class CatalogBusyError(CatalogError):
    """Another process holds the catalog's write lock."""

    http_status = 503
    code = "catalog_busy"


class ItemNotFoundError(CatalogError):
    exit_code = 2
    http_status = 404
    code = "item_not_found"


class CatalogItem(BaseModel):
    """One catalog item as the API and the CLI show it."""

    model_config = ConfigDict(extra="forbid")

    id: int
    content_hash: str
    title: str = ""
    url: str | None = None
    external_id: str | None = None
    image_path: str | None = None
    thumbnail_url: str
    width: int
    height: int
    extra: dict[str, Any] = Field(default_factory=dict)
    added_at: float
    # Reference images of the item (its own image included); search uses the best of them.
    images: int = 1


@dataclass
class NewItem:
    """An image to add: a file path or the bytes of an upload, plus its metadata.

    With `item_id` set it becomes one more reference image of that item (metadata ignored).
    """

    image: Path | bytes
    title: str = ""
    url: str | None = None
    external_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    item_id: int | None = None


@dataclass
class AddOutcome:
    source: str
    status: str  # "added", "duplicate" or "failed"
    item_id: int | None = None
    message: str = ""
    # The image's own row id (== item_id for an item's first image).
    image_id: int | None = None


def thumbnail_url(item_id: int) -> str:
    return f"/api/v1/items/{item_id}/thumbnail"


class Catalog:
    """Open with `open_catalog` (lens.index); see the module docstring for the file layout."""

    def __init__(self, folder: Path, settings: Settings, embedder, conn: sqlite3.Connection, meta: dict) -> None:
        self.folder = folder
        self.settings = settings
        self.embedder = embedder
        self.meta = meta
        self.dim = int(meta["dim"])
        self._conn = conn
        self._lock = threading.RLock()
        self._in_transaction = False
        self._vectors_changed = False
        self._most_images: int | None = None
        # The tuned head (lens.index.head) and the catalog's vectors projected by it; checked
        # again whenever the vectors or head.json change.
        self._head: ProjectionHead | None = None
        self._head_vectors: VectorIndex | None = None
        self._head_checked_for: tuple | None = None
        self._generation = self._committed_generation()
        # The vectors' search side (lens/index/stores: faiss in memory, or Milvus), derived
        # from the vectors in the items table.
        try:
            self._vectors: VectorStore = create_vector_store(settings, folder, self.dim, self)
            self._vectors.load(self._generation, self.meta)
        except BaseException:
            conn.close()
            raise

    # -- opening ---------------------------------------------------------------------------
    @classmethod
    def open(cls, settings: Settings, embedder, *, create: bool = False) -> Catalog | None:
        folder = settings.catalog_dir
        meta_path = folder / META_FILE
        if not meta_path.is_file():
            if not create:
                return None
            folder.mkdir(parents=True, exist_ok=True)
            meta = cls.new_meta(settings, embedder)
            conn = _connect(folder / DB_FILE)
            conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('generation', '0')")
            atomic_write_json(meta_path, meta)
        else:
            try:
                meta = json.loads(meta_path.read_text())
            except (OSError, ValueError) as exc:
                raise CatalogError(f"{meta_path} is unreadable: {exc}") from None
            check_embedder(meta, embedder, f"in {folder}")
            conn = _connect(folder / DB_FILE)
        (folder / "thumbs").mkdir(exist_ok=True)
        remove_stale_temporaries(folder)
        return cls(folder, settings, embedder, conn, meta)

    @staticmethod
    def new_meta(settings: Settings, embedder) -> dict:
        return {
            "format": FORMAT_VERSION,
            "embedder": {"name": embedder.name, "version": embedder.version},
            "dim": int(embedder.dim),
            "created_at": time.time(),
            "generation": 0,
            "index_kind": choose_kind(settings.index, 0),
            "items": 0,
        }

    @classmethod
    def peek(cls, settings: Settings) -> tuple[dict, int] | None:
        """(meta, committed writes) without opening the catalog; None when there is none."""
        try:
            meta = json.loads((settings.catalog_dir / META_FILE).read_text())
        except (OSError, ValueError):
            return None
        return meta, committed_writes(settings.catalog_dir) or 0

    def _committed_generation(self) -> int:
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return int(row[0]) if row else 0

    def all_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """Every image's (id, vector), as this connection sees them (open transaction included):
        what a vector store is built and repaired from."""
        rows = self._conn.execute("SELECT id, vector FROM items ORDER BY id").fetchall()
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(-1, self.dim)
        return ids, vectors

    def refresh(self) -> bool:
        """Pick up what another process saved since we loaded; True when something changed."""
        with self._lock:
            if self._in_transaction:
                return False
            generation = self._committed_generation()
            if generation == self._generation:
                return False
            self.meta = self._read_meta()
            self._vectors.load(generation, self.meta)
            self._generation = generation
            self._most_images = None
            self._head_checked_for = None
            return True

    def _read_meta(self) -> dict:
        try:
            return json.loads((self.folder / META_FILE).read_text())
        except (OSError, ValueError):
            return self.meta

    # -- reading ---------------------------------------------------------------------------
    def count(self) -> int:
        """Items (an item with several reference images counts once)."""
        return int(self._conn.execute("SELECT COUNT(*) FROM items WHERE parent_id IS NULL").fetchone()[0])

    def image_count(self) -> int:
        """Reference images, i.e. vectors, over all items."""
        return int(self._conn.execute("SELECT COUNT(*) FROM items").fetchone()[0])

    def _most_images_per_item(self) -> int:
        # A scan of the table: remembered until the next change (search calls it every time).
        if self._most_images is None:
            row = self._conn.execute(
                "SELECT MAX(n) FROM (SELECT COUNT(*) AS n FROM items GROUP BY COALESCE(parent_id, id)) AS per_item"
            ).fetchone()
            self._most_images = int(row[0] or 1)
        return self._most_images

    def __len__(self) -> int:
        return self.count()

    def search(self, vectors: np.ndarray, k: int, min_score: float = 0.0) -> list[list[Match]]:
        """The k most similar items for each query vector, best first, scores >= min_score.

        `vectors`: (N, dim) float32 L2-normalised, from this catalog's embedder. Scores are
        cosine similarities. Items removed since the index was built never appear.
        """
        import faiss

        # Workers serve one query per process; faiss' default threading made single queries
        # several times slower on shared 2-core machines.
        faiss.omp_set_num_threads(1)
        queries = np.ascontiguousarray(vectors, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise BadInputError(f"query vectors must be (N, {self.dim}); got {queries.shape}")
        if k < 1:
            raise BadInputError(f"k must be at least 1; got {k}")
        with self._lock:
            self.refresh()
            if self._vectors.size == 0 or len(queries) == 0:
                return [[] for _ in queries]
            index = self._vectors
            if (head := self.active_head()) is not None:
                queries, index = head.project(queries), self._head_vectors
            # Over-fetch images so that k distinct items remain once each is kept at its best image.
            fetch = k * self._most_images_per_item()
            for _ in range(SEARCH_REFETCHES + 1):
                scores, ids = index.search(queries, fetch)
                results, short = self._matches(scores, ids, k, min_score)
                # A full page that still left a row short of k items held ids the metadata does
                # not have (vectors a writer killed mid-save left in Milvus): ask for more.
                if not short or ids.shape[1] < fetch or fetch >= MAX_FETCH:
                    break
                fetch = min(fetch * 4, MAX_FETCH)
        return results

    def _matches(self, scores: np.ndarray, ids: np.ndarray, k: int, min_score: float) -> tuple[list[list[Match]], bool]:
        """The store's hits joined against the items table: (matches per query, whether a row has
        fewer than k matches although the store returned a full page of hits for it)."""
        wanted = {int(i) for i, s in zip(ids.ravel(), scores.ravel(), strict=True) if i >= 0 and s >= min_score}
        images = self._rows_by_id(wanted)
        owner = {i: r["parent_id"] or i for i, r in images.items()}
        rows = {i: r for i, r in images.items() if r["parent_id"] is None}
        rows.update(self._rows_by_id(set(owner.values()) - set(rows)))
        results = []
        short = False
        for row_scores, row_ids in zip(scores, ids, strict=True):
            matches: list[Match] = []
            listed: set[int] = set()
            for score, image_id in zip(row_scores, row_ids, strict=True):
                row = rows.get(owner.get(int(image_id), -1))
                if row is None or score < min_score or row["id"] in listed:
                    continue
                listed.add(row["id"])
                matches.append(_match_from_row(row, float(score)))
                if len(matches) == k:
                    break
            full_page = len(row_ids) > 0 and row_ids[-1] >= 0 and row_scores[-1] >= min_score
            short = short or (len(matches) < k and full_page)
            results.append(matches)
        return results, short

    def matches_for(self, scored: Iterable[tuple[int, float]]) -> list[Match]:
        """Matches for (item id, score) pairs from another index (text search), in that order;
        ids of items removed meanwhile are skipped."""
        scored = list(scored)
        with self._lock:
            rows = self._rows_by_id(i for i, _ in scored)
        return [_match_from_row(rows[i], s) for i, s in scored if i in rows and rows[i]["parent_id"] is None]

    def committed_writes(self) -> int:
        """Saves committed so far, by any process (the counter result caches key on)."""
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key = 'writes'").fetchone()
        return int(row[0]) if row else 0

    def item_texts(self) -> list[tuple[int, str, str]]:
        """(item id, title, description) of every item, in id order: what text search reads
        (the description from `extra`'s descriptive fields, lens.index.text.TEXT_FIELDS)."""
        from lens.index.text import item_description

        with self._lock:
            rows = self._conn.execute("SELECT id, title, extra FROM items WHERE parent_id IS NULL ORDER BY id").fetchall()
        return [(int(r["id"]), r["title"] or "", item_description(json.loads(r["extra"]))) for r in rows]

    def active_head(self) -> ProjectionHead | None:
        """The tuned head searches apply: a saved one that can serve this catalog as it is now
        (same embedder; every image one it was trained on), unless tune.use_head is off."""
        with self._lock:
            if not self.settings.tune.use_head:
                return None
            state = (head_signature(self.folder), self._generation, self._in_transaction)
            if state == self._head_checked_for:
                return self._head
            self._head_checked_for = state
            self._head = self._head_vectors = None
            head = load_head(self.folder) if state[0] is not None else None
            if head is None:
                return None
            ids, vectors = self.all_vectors()
            reason = self._head_cannot_serve(head, ids)
            if reason:
                log.warning("tuned head %s in %s not used: %s", head.version, self.folder, reason)
                return None
            self._head_vectors = VectorIndex.build(
                head.out_dim, choose_kind(self.settings.index, len(ids)), self.settings.index, ids, head.project(vectors))
            self._head = head
            log.info("searching with tuned head %s (%d images re-projected)", head.version, len(ids))
            return head

    def _head_cannot_serve(self, head: ProjectionHead, image_ids: np.ndarray) -> str:
        built = self.meta.get("embedder", {})
        trained = head.meta.get("embedder", {})
        if (trained.get("name"), trained.get("version"), head.dim) != (built.get("name"), built.get("version"), self.dim):
            return (f"it was trained on vectors of embedder {trained.get('name')} ({trained.get('version')}), "
                    f"the catalog's are {built.get('name')} ({built.get('version')}); run `lens index tune` again")
        unseen = head.unseen_images(image_ids)
        if unseen:
            return (f"{unseen} catalog image(s) were added after it was trained (it has never seen them); "
                    "run `lens index tune` again")
        return ""

    def mark_changed(self) -> None:
        """Count a change made beside the items table (a new or removed tuned head) as a
        committed write: result caches key on committed_writes."""
        with self._lock:
            self._begin()
            self.save()

    def image_rows(self) -> list[tuple[int, int, str, str | None]]:
        """(image id, item id, content hash, image path) of every reference image, by id."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, COALESCE(parent_id, id), content_hash, image_path FROM items ORDER BY id").fetchall()
        return [(int(r[0]), int(r[1]), str(r[2]),
                 None if r[3] is None else str(r[3]) if Path(r[3]).is_absolute() else str(self.folder / r[3]))
                for r in rows]

    def _rows_by_id(self, ids: Iterable[int]) -> dict[int, sqlite3.Row]:
        ids = list(ids)
        rows: dict[int, sqlite3.Row] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self._conn.execute(f"SELECT {ITEM_COLUMNS} FROM items WHERE id IN ({marks})", chunk):
                rows[row["id"]] = row
        return rows

    def _image_counts(self, item_ids: list[int]) -> dict[int, int]:
        marks = ",".join("?" * len(item_ids))
        return {int(owner): int(n) for owner, n in self._conn.execute(
            f"SELECT COALESCE(parent_id, id) AS owner, COUNT(*) FROM items "
            f"WHERE id IN ({marks}) OR parent_id IN ({marks}) GROUP BY owner", [*item_ids, *item_ids])}

    def get(self, item_id: int) -> CatalogItem:
        """The item with this id; ItemNotFoundError when there is none."""
        with self._lock:
            row = self._rows_by_id([int(item_id)]).get(int(item_id))
            if row is None or row["parent_id"] is not None:
                raise ItemNotFoundError(f"no catalog item with id {item_id}")
            return _item_from_row(row, self._image_counts([int(item_id)]).get(int(item_id), 1))

    def find(self, *, content_hash: str | None = None, external_id: str | None = None) -> int | None:
        """The id of the item with this content hash (in any of its images) or external id, or None."""
        with self._lock:
            if content_hash:
                query, value = "SELECT COALESCE(parent_id, id) FROM items WHERE content_hash = ?", content_hash
            else:
                query, value = "SELECT id FROM items WHERE external_id = ? AND parent_id IS NULL ORDER BY id LIMIT 1", external_id
            row = self._conn.execute(query, (value,)).fetchone()
        return int(row[0]) if row else None

    def items(self, offset: int = 0, limit: int = 100) -> list[CatalogItem]:
        """A page of items in id order."""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {ITEM_COLUMNS} FROM items WHERE parent_id IS NULL ORDER BY id LIMIT ? OFFSET ?",
                (int(limit), int(offset)),
            ).fetchall()
            counts = self._image_counts([r["id"] for r in rows]) if rows else {}
        return [_item_from_row(r, counts.get(r["id"], 1)) for r in rows]

    def image_paths(self, item_id: int) -> list[str]:
        """Where the item's reference images are (absolute, or relative to the catalog folder)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT image_path FROM items WHERE (id = ? OR parent_id = ?) AND image_path IS NOT NULL ORDER BY id",
                (int(item_id), int(item_id)),
            ).fetchall()
        return [self._image_file(r[0]) for r in rows]

    def thumbnail_bytes(self, item_id: int) -> bytes:
        """The item's JPEG thumbnail; ItemNotFoundError for an unknown item."""
        return self.thumbnail_path(item_id).read_bytes()

    def reference_images(self, item_id: int) -> list[tuple[str, str, str | None, bytes | None]]:
        """For each of the item's images: (content hash, path as image_paths gives it, params
        of its stored local features or None, their bytes or None), for lens.index.rerank."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT i.content_hash, i.image_path, f.params, f.data FROM items i "
                "LEFT JOIN local_features f ON f.content_hash = i.content_hash "
                "WHERE (i.id = ? OR i.parent_id = ?) AND i.image_path IS NOT NULL ORDER BY i.id",
                (int(item_id), int(item_id)),
            ).fetchall()
        return [(r[0], self._image_file(r[1]), r[2], bytes(r[3]) if r[3] is not None else None) for r in rows]

    def _image_file(self, reference: str) -> str:
        """The file behind items.image_path: absolute as added, or relative to the folder."""
        return str(reference) if Path(reference).is_absolute() else str(self.folder / reference)

    def thumbnail_path(self, item_id: int) -> Path:
        """The item's JPEG thumbnail; ItemNotFoundError for an unknown item."""
        path = self.folder / "thumbs" / f"{int(item_id)}.jpg"
        if not path.is_file() or self.find_id(item_id) is None:
            raise ItemNotFoundError(f"no catalog item with id {item_id}")
        return path

    def find_id(self, item_id: int) -> int | None:
        with self._lock:
            row = self._conn.execute("SELECT id FROM items WHERE id = ? AND parent_id IS NULL", (int(item_id),)).fetchone()
        return int(row[0]) if row else None

    def stats(self) -> dict[str, Any]:
        """Counts and settings for `lens index stats` and the API."""
        with self._lock:
            files = [p for p in self.folder.rglob("*") if p.is_file()]
            return {
                "catalog_dir": str(self.folder),
                "items": self.count(),
                "images": self.image_count(),
                "embedder": self.meta["embedder"]["name"],
                "embedder_version": self.meta["embedder"]["version"],
                "dim": self.dim,
                "index_kind": self._vectors.kind,
                "index_vectors": self._vectors.size,
                "generation": self._generation,
                "tuned_head": head.version if (head := self.active_head()) is not None else None,
                "unsaved_changes": self._in_transaction,
                "disk_bytes": sum(p.stat().st_size for p in files),
            }

    # -- writing ---------------------------------------------------------------------------
    def _begin(self) -> None:
        if self._in_transaction:
            return
        self._begin_transaction()
        self._in_transaction = True
        # Another writer may have saved between our last look and taking the lock.
        generation = self._committed_generation()
        if generation != self._generation:
            self._vectors.load(generation, self.meta)
            self._generation = generation
            self._most_images = None
            self._head_checked_for = None
        try:
            self._vectors.begin()
        except LensError:
            self._conn.execute("ROLLBACK")
            self._in_transaction = False
            raise

    def _begin_transaction(self) -> None:
        """Open the write transaction, holding the catalog's one write lock."""
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise CatalogBusyError(
                f"another process is writing to the catalog in {self.folder} ({exc}); try again later"
            ) from None

    def _rollback(self) -> None:
        # SQLite may have rolled back already (an I/O error or a full disk ends it).
        with contextlib.suppress(sqlite3.OperationalError):
            self._conn.execute("ROLLBACK")

    def add_image(
        self,
        image: Path | str | bytes,
        *,
        title: str = "",
        url: str | None = None,
        external_id: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> int:
        """Add one image (a file path or the bytes of an upload) and return its item id.

        Idempotent by content hash: an image already in the catalog returns its existing id and
        changes nothing (use `update` to change its metadata). A file that cannot be decoded
        raises BadInputError. Durable and visible to others after `save()`.
        """
        source = Path(image) if isinstance(image, str) else image
        (outcome,) = self.add_images([NewItem(source, title, url, external_id, dict(extra or {}))])
        if outcome.status == "failed":
            raise BadInputError(f"{outcome.source}: {outcome.message}")
        return int(outcome.item_id)

    def add_images(
        self,
        new_items: Iterable[NewItem],
        *,
        batch_size: int | None = None,
        progress: Callable[[int], None] | None = None,
        join_external_id: bool = False,
    ) -> list[AddOutcome]:
        """Add many images, embedding them in batches; failures are reported, never raised.

        `progress(n)` is called after each batch with the number of inputs it handled.
        `join_external_id`: an image whose external_id an item already has (in the catalog or
        earlier in `new_items`) becomes one more reference image of that item.
        """
        batch_size = batch_size or self.settings.embed.batch_size
        outcomes: list[AddOutcome] = []
        batch: list[NewItem] = []
        for new in new_items:
            batch.append(new)
            if len(batch) >= batch_size:
                outcomes += self._add_batch(batch, join_external_id)
                if progress:
                    progress(len(batch))
                batch = []
        if batch:
            outcomes += self._add_batch(batch, join_external_id)
            if progress:
                progress(len(batch))
        return outcomes

    def _add_batch(self, batch: list[NewItem], join_external_id: bool = False) -> list[AddOutcome]:
        limits = self.settings.limits
        outcomes: list[AddOutcome] = []
        decoded: list[tuple[NewItem, DecodedImage, bytes, AddOutcome]] = []
        seen: dict[str, AddOutcome] = {}
        # The same image twice in one batch: the repeat gets the first one's id once inserted.
        repeats: list[tuple[AddOutcome, AddOutcome]] = []
        with self._lock:
            for new in batch:
                source = str(new.image) if isinstance(new.image, Path) else f"<{len(new.image)} bytes>"
                outcome = AddOutcome(source=source, status="failed")
                outcomes.append(outcome)
                try:
                    data = new.image.read_bytes() if isinstance(new.image, Path) else bytes(new.image)
                    image = decode_image(data, max_bytes=limits.max_upload_bytes, max_pixels=limits.max_pixels)
                except OSError as exc:
                    outcome.message = f"cannot read: {exc.strerror or exc}"
                    continue
                except LensError as exc:
                    outcome.message = exc.message
                    continue
                if new.item_id is not None and self.find_id(new.item_id) is None:
                    outcome.message = f"no catalog item with id {new.item_id}"
                    continue
                existing = self.find(content_hash=image.sha256)
                if existing is not None:
                    outcome.status, outcome.item_id = "duplicate", existing
                    continue
                if image.sha256 in seen:
                    outcome.status = "duplicate"
                    repeats.append((outcome, seen[image.sha256]))
                    continue
                seen[image.sha256] = outcome
                decoded.append((new, image, data, outcome))
            if not decoded:
                return outcomes
            images = [image.rgb for _, image, _, _ in decoded]
            # The re-ranking features on a second thread while the batch is embedded: OpenCV and
            # onnxruntime release the GIL, and one after the other left a core idle for the
            # SIFT part of a build (bench/RESULTS.md speed round 3).
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lens-features") as side:
                features_future = side.submit(self._local_features, images)
                vectors = self.embedder.embed(images)
                features = features_future.result()
            self._begin()
            ids = []
            for (new, image, data, outcome), vector, feature in zip(decoded, vectors, features, strict=True):
                image_path = self._image_reference(new, image, data)
                parent = new.item_id
                if parent is None and join_external_id and new.external_id:
                    # Sees the rows inserted earlier in this transaction, too.
                    parent = self.find(external_id=new.external_id)
                # A further image of an item carries no metadata of its own: the item's row has it.
                meta = (new.external_id, new.title or "", new.url, json.dumps(new.extra or {})) if parent is None else (None, "", None, "{}")
                image_id = int(self._conn.execute(
                    "INSERT INTO items (content_hash, external_id, title, url, image_path, width, height, extra, added_at, vector, parent_id) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    (
                        image.sha256, meta[0], meta[1], meta[2], image_path, image.width, image.height, meta[3],
                        time.time(), np.asarray(vector, dtype=np.float32).tobytes(), parent,
                    ),
                ).fetchall()[0][0])  # all rows: a RETURNING statement ends once read to its end
                if feature is not None:
                    self._conn.execute("INSERT INTO local_features (content_hash, params, data) VALUES (?, ?, ?) "
                                       "ON CONFLICT (content_hash) DO UPDATE SET params = excluded.params, data = excluded.data",
                                       (image.sha256, *feature))
                if parent is None:
                    self._put_thumbnail(image_id, image.rgb)
                outcome.status, outcome.item_id, outcome.image_id = "added", parent or image_id, image_id
                ids.append(image_id)
            self._vectors.add(np.asarray(ids, dtype=np.int64), vectors)
            self._vectors_changed = True
            self._most_images = None
            self._head_checked_for = None
            for repeat, first in repeats:
                repeat.item_id, repeat.image_id = first.item_id, first.image_id
        return outcomes

    def _local_features(self, images: list[np.ndarray]) -> list[tuple[str, bytes] | None]:
        """(params, bytes) of each image's re-ranking features; None each when re-ranking is off."""
        config = self.settings.rerank
        if not config.enabled:
            return [None] * len(images)
        from lens.index.rerank import encode, root_sift, stored_params

        params = stored_params(config)
        return [(params, encode(root_sift(rgb, config.max_side, config.features))) for rgb in images]

    def add_reference_image(self, item_id: int, image: Path | str | bytes) -> AddOutcome:
        """One more reference image of an existing item (durable after `save()`).

        Status "added", or "duplicate" when the image is in the catalog already (outcome.item_id
        says under which item). ItemNotFoundError for an unknown item, BadInputError for a file
        that cannot be decoded.
        """
        if self.find_id(item_id) is None:
            raise ItemNotFoundError(f"no catalog item with id {item_id}")
        source = Path(image) if isinstance(image, str) else image
        (outcome,) = self.add_images([NewItem(source, item_id=int(item_id))])
        if outcome.status == "failed":
            raise BadInputError(f"{outcome.source}: {outcome.message}")
        return outcome

    def _image_reference(self, new: NewItem, image: DecodedImage, data: bytes) -> str:
        """What items.image_path records: the file added (absolute), or a copy of an upload."""
        return str(new.image.resolve()) if isinstance(new.image, Path) else self._store_upload(image, data)

    def _put_thumbnail(self, item_id: int, rgb: np.ndarray) -> None:
        _write_thumbnail(rgb, self.folder / "thumbs" / f"{item_id}.jpg")

    def _drop_thumbnails(self, item_ids: list[int]) -> None:
        for item_id in item_ids:
            (self.folder / "thumbs" / f"{item_id}.jpg").unlink(missing_ok=True)

    def _store_upload(self, image: DecodedImage, data: bytes) -> str:
        relative = Path("images") / image.sha256[:2] / f"{image.sha256}.{image.format.lower()}"
        path = self.folder / relative
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, data)
        return str(relative)

    def update(self, item_id: int, **fields: Any) -> CatalogItem:
        """Change an item's title, url, external_id or extra (replaced whole); returns it."""
        unknown = sorted(set(fields) - set(EDITABLE_FIELDS))
        if unknown:
            raise BadInputError(f"cannot update {', '.join(unknown)}; editable: {', '.join(EDITABLE_FIELDS)}")
        with self._lock:
            if self.find_id(item_id) is None:
                raise ItemNotFoundError(f"no catalog item with id {item_id}")
            if fields:
                self._begin()
                values = {k: json.dumps(v or {}) if k == "extra" else v for k, v in fields.items()}
                assignments = ", ".join(f"{k} = ?" for k in values)
                self._conn.execute(f"UPDATE items SET {assignments} WHERE id = ?", (*values.values(), int(item_id)))
            return self.get(item_id)

    def remove(self, ids: Iterable[int]) -> list[int]:
        """Remove items by id; returns the ids that existed (unknown ids are ignored)."""
        with self._lock:
            present = sorted(i for i, r in self._rows_by_id(int(i) for i in ids).items() if r["parent_id"] is None)
            if not present:
                return []
            self._begin()
            marks = ",".join("?" * len(present))
            images = [int(r[0]) for r in self._conn.execute(
                f"SELECT id FROM items WHERE id IN ({marks}) OR parent_id IN ({marks})", [*present, *present])]
            self._conn.execute(f"DELETE FROM items WHERE id IN ({marks}) OR parent_id IN ({marks})", [*present, *present])
            self._conn.execute("DELETE FROM local_features WHERE content_hash NOT IN (SELECT content_hash FROM items)")
            self._vectors.remove(images)
            self._most_images = None
            self._head_checked_for = None
            self._vectors_changed = True
            self._drop_thumbnails(present)
            return present

    def save(self) -> None:
        """Make every change since the last save durable and visible to other processes.

        Crash-safe: killed at any point, the catalog reopens as of the previous save or this one.
        """
        with self._lock:
            if not self._in_transaction:
                return
            count = self.count()
            if self._vectors_changed:
                generation = self._generation + 1
                self._vectors.prepare_save(generation, self.meta)
                self._conn.execute("UPDATE meta SET value = ? WHERE key = 'generation'", (str(generation),))
            else:
                generation = self._generation
            # Every save counts, vectors changed or not (a new title changes search answers):
            # result caches key on this counter (committed_writes).
            self._conn.execute("INSERT INTO meta(key, value) VALUES ('writes', '1') ON CONFLICT(key) "
                               "DO UPDATE SET value = CAST(CAST(meta.value AS INTEGER) + 1 AS TEXT)")
            meta = {**self.meta, "generation": generation, "index_kind": self._vectors.kind, "items": count,
                    "saved_at": time.time()}
            self._write_meta_in_transaction(meta)
            self._conn.execute("COMMIT")
            self._in_transaction = False
            self._vectors_changed = False
            self._generation = generation
            self.meta = meta
            self._write_meta_after_commit(meta)
            self._vectors.finish_save(generation)

    def _write_meta_in_transaction(self, meta: dict) -> None:
        """A metadata store that keeps the catalog's meta in its tables writes it here."""

    def _write_meta_after_commit(self, meta: dict) -> None:
        atomic_write_json(self.folder / META_FILE, meta)

    def discard(self) -> None:
        """Drop unsaved changes (the catalog returns to its last saved state)."""
        with self._lock:
            if self._in_transaction:
                self._rollback()
                self._in_transaction = False
                self._vectors_changed = False
                self._vectors.discard(self._generation, self.meta)
                self._most_images = None
                self._head_checked_for = None

    def close(self) -> None:
        """Close the database; unsaved changes are discarded."""
        with self._lock:
            if self._in_transaction:
                self.discard()
            self._vectors.close()
            self._conn.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def committed_writes(folder: Path) -> int | None:
    """How many saves the catalog in `folder` has committed (None: no catalog). Read-only and
    cheap (one row), for processes that do not open the catalog, such as the gateway."""
    path = folder / DB_FILE
    if not path.is_file():
        return None
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)) as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'writes'").fetchone()
    except sqlite3.Error:
        return None
    return int(row[0]) if row else 0


def check_embedder(meta: dict, embedder, where: str) -> None:
    """CatalogMismatchError unless the catalog's vectors came from this embedder."""
    built = meta.get("embedder", {})
    if (built.get("name"), built.get("version")) != (embedder.name, embedder.version):
        raise CatalogMismatchError(
            f"the catalog {where} was built with embedder {built.get('name')} "
            f"({built.get('version')}), but the configured embedder is {embedder.name} "
            f"({embedder.version}); their vectors cannot be compared. Set embed.backend "
            f"back to {built.get('name')}, or rebuild the catalog (`lens index add`) in "
            "an empty data dir."
        )


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    conn.row_factory = sqlite3.Row
    # WAL: readers never block on the writer and see the last committed save.
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.executescript(SCHEMA)
    _migrate(conn)
    return conn


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a catalog written by an older lens up to SCHEMA_VERSION, in one transaction.

    Only an old file is written to: opening a current one stays a read (a reader must never
    wait on the writer's lock)."""
    has_index = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'items_parent'").fetchone()
    if has_index:
        return
    try:
        conn.execute("BEGIN IMMEDIATE")
        if "parent_id" not in {r[1] for r in conn.execute("PRAGMA table_info(items)")}:
            conn.execute("ALTER TABLE items ADD COLUMN parent_id INTEGER")
            log.info("catalog schema upgraded to version %d (several images per item)", SCHEMA_VERSION)
        conn.execute("CREATE INDEX IF NOT EXISTS items_parent ON items(parent_id)")
        conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        conn.execute("COMMIT")
    except sqlite3.OperationalError as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise CatalogBusyError(f"cannot upgrade the catalog's schema now ({exc}); try again later") from None


def _match_from_row(row: sqlite3.Row, score: float) -> Match:
    return Match(
        item_id=row["id"],
        score=round(float(score), 4),
        title=row["title"],
        thumbnail_url=thumbnail_url(row["id"]),
        url=row["url"],
        external_id=row["external_id"],
        metadata=json.loads(row["extra"]),
    )


def _item_from_row(row: sqlite3.Row, images: int = 1) -> CatalogItem:
    return CatalogItem(
        id=row["id"],
        content_hash=row["content_hash"],
        title=row["title"],
        url=row["url"],
        external_id=row["external_id"],
        image_path=row["image_path"],
        thumbnail_url=thumbnail_url(row["id"]),
        width=row["width"],
        height=row["height"],
        extra=json.loads(row["extra"]),
        added_at=row["added_at"],
        images=images,
    )


def _thumbnail_jpeg(rgb: np.ndarray) -> bytes:
    image = Image.fromarray(rgb)
    image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def _write_thumbnail(rgb: np.ndarray, path: Path) -> None:
    # Thumbnails are derived data: temp + rename keeps them whole, without an fsync each.
    with atomic_output(path) as tmp:
        tmp.write_bytes(_thumbnail_jpeg(rgb))

"""`catalog.backend = "postgres"`: the catalog's items, their vectors (the truth the vector store
is derived from), uploaded images, thumbnails and meta in PostgreSQL, so that any worker on any
machine can read and write it without a shared disk.

The Catalog logic is the SQLite one (lens/index/catalog.py); this module gives it a connection
with the same small surface (`execute`, `?` parameters, rows by name or position) over a
psycopg 3 connection pool, and keeps in tables what the SQLite catalog keeps in files:

    meta          generation, writes (result caches key on it) and the catalog's meta as JSON
    items         as in SQLite (vector BYTEA)
    thumbnails    item_id -> 256 px JPEG
    blobs         content_hash -> the bytes of every added image (reference images for re-ranking)
    local_features  content_hash -> its RootSIFT keypoints for re-ranking (as in SQLite)

Writes: one transaction from the first change to `save()`. Taking it locks the meta row
(`SELECT ... FOR UPDATE`), so writers on different machines queue behind each other for at most
`catalog.options.timeout_s` (then 503 catalog_busy) and a killed writer's transaction is rolled
back by the server. Reads borrow a pooled connection per statement, so a PostgreSQL restart
costs the statements running at that moment (503 catalog_db_unavailable), not the process.

Schema changes are files in lens/index/migrations/postgres/NNNN_name.sql, applied in order by
`lens db migrate` (or by the first `open(create=True)`), each in a transaction, recorded in
lens_migrations.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from pathlib import Path
from typing import Any

from pydantic import Field

from lens.config import Settings
from lens.errors import LensError
from lens.files import atomic_output
from lens.image import DecodedImage
from lens.index.catalog import (
    Catalog,
    CatalogBusyError,
    CatalogError,
    ItemNotFoundError,
    NewItem,
    _thumbnail_jpeg,
    check_embedder,
)
from lens.registry import BackendOptions

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations" / "postgres"
# One advisory lock key for schema migrations (any constant: migrating processes queue on it).
MIGRATION_LOCK = 0x6C656E73  # "lens"
BLOB_PREFIX = "db:"
THUMBNAIL_QUERY = ("SELECT t.jpeg FROM thumbnails t JOIN items i ON i.id = t.item_id "
                   "WHERE t.item_id = ? AND i.parent_id IS NULL")


class CatalogDatabaseUnavailableError(CatalogError):
    """PostgreSQL cannot be reached, or went away in the middle of a statement."""

    http_status = 503
    code = "catalog_db_unavailable"
    retryable = True


class CatalogSchemaError(CatalogError):
    exit_code = 2
    http_status = 503
    code = "catalog_schema_outdated"


class PostgresOptions(BackendOptions):
    """`[catalog.options]` / LENS_CATALOG__OPTIONS__<NAME> for catalog.backend = "postgres"."""

    # libpq connection string or URL; the password can stay in ~/.pgpass or PGPASSWORD.
    url: str = "postgresql://127.0.0.1:5432/lens"
    # The schema holding lens' tables (one per catalog; tests make their own).
    schema_name: str = Field("lens", alias="schema", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    # Connections per process: a worker uses one at a time per catalog; a few cover its threads.
    pool_size: int = Field(4, ge=1, le=100)
    # How long a statement may wait for a connection, or a writer for the write lock, before
    # the request fails (503 catalog_db_unavailable / catalog_busy).
    timeout_s: float = Field(10.0, gt=0)


def postgres_options(settings: Settings) -> PostgresOptions:
    return PostgresOptions.parse(settings.catalog.options)


# -- connections --------------------------------------------------------------------------------
class _Row(tuple):
    """A result row readable by position and by column name, like sqlite3.Row."""

    _names: dict[str, int]

    def __getitem__(self, key):  # type: ignore[override]
        if isinstance(key, str):
            return tuple.__getitem__(self, self._names[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._names)


def _row_factory(cursor):
    names = {d.name: i for i, d in enumerate(cursor.description or [])}

    def make(values):
        row = _Row(bytes(v) if isinstance(v, memoryview) else v for v in values)
        row._names = names
        return row

    return make


class _Result:
    def __init__(self, rows: list) -> None:
        self._rows = rows

    def fetchone(self):
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list:
        return list(self._rows)

    def __iter__(self):
        return iter(self._rows)


_pools: dict[tuple[str, str], Any] = {}
_pools_lock = threading.Lock()


def pool_for(settings: Settings):
    """This process's pool for the configured database and schema (one per pair, shared)."""
    from psycopg_pool import ConnectionPool

    config = postgres_options(settings)
    key = (config.url, config.schema_name)
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = ConnectionPool(
                config.url, min_size=1, max_size=config.pool_size, open=False,
                timeout=config.timeout_s, check=ConnectionPool.check_connection,
                kwargs={"autocommit": True, "connect_timeout": max(1, int(config.timeout_s)),
                        "options": f"-c search_path={config.schema_name}"},
                configure=lambda conn: setattr(conn, "row_factory", _row_factory),
                name=f"lens-{config.schema_name}",
            )
            pool.open(wait=False)
            _pools[key] = pool
    return pool


def close_pools() -> None:
    """Close every pool of this process (tests that drop their schema call it first)."""
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.close()


def _unavailable(settings: Settings, exc: Exception) -> CatalogDatabaseUnavailableError:
    return CatalogDatabaseUnavailableError(
        f"the catalog database (PostgreSQL at {_redacted(postgres_options(settings).url)}) is unavailable: "
        f"{str(exc).strip() or type(exc).__name__}; nothing was changed, try again later")


class PgConnection:
    """The part of sqlite3.Connection the Catalog uses, over a pool: statements outside a
    transaction borrow a connection each; BEGIN ... COMMIT/ROLLBACK keep one."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pool = pool_for(settings)
        self._txn = None

    @property
    def in_transaction(self) -> bool:
        return self._txn is not None

    def execute(self, sql: str, params: Any = ()) -> _Result:
        import psycopg
        from psycopg_pool import PoolTimeout

        sql = sql.replace("?", "%s")
        head = sql.strip().split(None, 1)[0].upper()
        try:
            if head == "BEGIN":
                self._txn = self.pool.getconn()
                self._txn.execute("BEGIN")
                return _Result([])
            if head in ("COMMIT", "ROLLBACK"):
                conn, self._txn = self._txn, None
                if conn is None:
                    return _Result([])
                try:
                    conn.execute(head)
                finally:
                    self.pool.putconn(conn)
                return _Result([])
            if self._txn is not None:
                cursor = self._txn.execute(sql, params or None)
                return _Result(cursor.fetchall() if cursor.description else [])
            with self.pool.connection() as conn:
                cursor = conn.execute(sql, params or None)
                return _Result(cursor.fetchall() if cursor.description else [])
        except (psycopg.OperationalError, PoolTimeout) as exc:
            if isinstance(exc, psycopg.errors.LockNotAvailable):
                raise CatalogBusyError(
                    "another worker is writing to the catalog (waited "
                    f"{postgres_options(self.settings).timeout_s:g} s for its lock); try again later") from None
            raise _unavailable(self.settings, exc) from None

    def abandon(self) -> None:
        """Roll back and return the transaction's connection, whatever state it is in."""
        conn, self._txn = self._txn, None
        if conn is None:
            return
        with contextlib.suppress(Exception):
            conn.execute("ROLLBACK")
        self.pool.putconn(conn)

    def close(self) -> None:
        self.abandon()


# -- migrations -----------------------------------------------------------------------------------
def migration_files() -> list[tuple[int, str, Path]]:
    found = []
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        number, _, name = path.stem.partition("_")
        found.append((int(number), name, path))
    return found


def migrate(settings: Settings) -> list[str]:
    """Apply the migrations the database has not had, in order; returns their names."""
    import psycopg

    config = postgres_options(settings)
    applied: list[str] = []
    try:
        with psycopg.connect(config.url, autocommit=True,
                             connect_timeout=max(1, int(config.timeout_s))) as conn:
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{config.schema_name}"')
            conn.execute(f'SET search_path = "{config.schema_name}"')
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                conn.execute("CREATE TABLE IF NOT EXISTS lens_migrations (version INTEGER PRIMARY KEY, "
                             "name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
                done = {r[0] for r in conn.execute("SELECT version FROM lens_migrations")}
            for version, name, path in migration_files():
                if version in done:
                    continue
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                    if conn.execute("SELECT 1 FROM lens_migrations WHERE version = %s", (version,)).fetchone():
                        continue  # another process applied it while we waited
                    conn.execute(path.read_text())
                    conn.execute("INSERT INTO lens_migrations (version, name) VALUES (%s, %s)", (version, name))
                applied.append(f"{version:04d}_{name}")
                log.info("catalog database: applied migration %04d_%s", version, name)
    except psycopg.OperationalError as exc:
        raise _unavailable(settings, exc) from None
    return applied


def schema_version(conn: PgConnection) -> int:
    """The newest migration applied (0: none, the schema or its tables are not there)."""
    exists = conn.execute("SELECT to_regclass('lens_migrations')").fetchone()[0]
    if exists is None:
        return 0
    return int(conn.execute("SELECT COALESCE(MAX(version), 0) FROM lens_migrations").fetchone()[0])


def _required_version() -> int:
    return max((v for v, _, _ in migration_files()), default=0)


# -- the catalog ----------------------------------------------------------------------------------
class PostgresCatalog(Catalog):
    """Catalog with its tables in PostgreSQL; `settings.catalog_dir` is only a local cache
    (thumbnails and images written out for send_file and re-ranking, faiss files)."""

    Options = PostgresOptions

    @classmethod
    def open(cls, settings: Settings, embedder, *, create: bool = False) -> PostgresCatalog | None:
        conn = PgConnection(settings)
        version = schema_version(conn)
        if version < _required_version():
            if not create and version == 0:
                return None
            if not create:
                raise CatalogSchemaError(
                    f"the catalog database schema {postgres_options(settings).schema_name} is at migration {version}, "
                    f"this lens needs {_required_version()}: run `lens db migrate`")
            migrate(settings)
        meta = cls._meta_row(conn)
        if meta is None:
            if not create:
                return None
            meta = cls.new_meta(settings, embedder)
            conn.execute("INSERT INTO meta (key, value) VALUES ('catalog', ?) ON CONFLICT (key) DO NOTHING",
                         (json.dumps(meta),))
            meta = cls._meta_row(conn)  # another worker may have created it first
        check_embedder(meta, embedder, f"in PostgreSQL schema {postgres_options(settings).schema_name}")
        folder = settings.catalog_dir
        (folder / "thumbs").mkdir(parents=True, exist_ok=True)
        return cls(folder, settings, embedder, conn, meta)

    @classmethod
    def peek(cls, settings: Settings) -> tuple[dict, int] | None:
        conn = PgConnection(settings)
        if schema_version(conn) == 0:
            return None
        rows = {r[0]: r[1] for r in conn.execute("SELECT key, value FROM meta WHERE key IN ('catalog', 'writes')")}
        if "catalog" not in rows:
            return None
        return json.loads(rows["catalog"]), int(rows.get("writes", 0))

    @staticmethod
    def _meta_row(conn: PgConnection) -> dict | None:
        row = conn.execute("SELECT value FROM meta WHERE key = 'catalog'").fetchone()
        return json.loads(row[0]) if row else None

    def _read_meta(self) -> dict:
        return self._meta_row(self._conn) or self.meta

    def _write_meta_in_transaction(self, meta: dict) -> None:
        self._conn.execute("UPDATE meta SET value = ? WHERE key = 'catalog'", (json.dumps(meta),))

    def _write_meta_after_commit(self, meta: dict) -> None:
        return None

    def _begin_transaction(self) -> None:
        self._conn.execute("BEGIN")
        try:
            timeout_ms = int(postgres_options(self.settings).timeout_s * 1000)
            self._conn.execute(f"SET LOCAL lock_timeout = {timeout_ms}")
            # The one write lock: every writer, on any machine, takes this row first.
            self._conn.execute("SELECT value FROM meta WHERE key = 'generation' FOR UPDATE")
        except LensError:
            self._conn.abandon()
            raise

    def _rollback(self) -> None:
        self._conn.abandon()

    # Files of the SQLite catalog, kept in tables here.
    def _image_reference(self, new: NewItem, image: DecodedImage, data: bytes) -> str:
        # Even a path: the worker that re-ranks against it may be on another machine.
        self._conn.execute("INSERT INTO blobs (content_hash, format, data) VALUES (?, ?, ?) "
                           "ON CONFLICT (content_hash) DO NOTHING", (image.sha256, image.format.lower(), data))
        return f"{BLOB_PREFIX}{image.sha256}.{image.format.lower()}"

    def _put_thumbnail(self, item_id: int, rgb) -> None:
        self._conn.execute("INSERT INTO thumbnails (item_id, jpeg) VALUES (?, ?)", (item_id, _thumbnail_jpeg(rgb)))

    def _drop_thumbnails(self, item_ids: list[int]) -> None:
        return None  # ON DELETE CASCADE removed them with their items

    def thumbnail_bytes(self, item_id: int) -> bytes:
        with self._lock:
            row = self._conn.execute(THUMBNAIL_QUERY, (int(item_id),)).fetchone()
        if row is None:
            raise ItemNotFoundError(f"no catalog item with id {item_id}")
        return bytes(row[0])

    def thumbnail_path(self, item_id: int) -> Path:
        """The thumbnail written out to this machine's cache (item ids are never reused)."""
        data = self.thumbnail_bytes(item_id)
        path = self.folder / "thumbs" / f"{int(item_id)}.jpg"
        if not path.is_file():
            with atomic_output(path) as tmp:
                tmp.write_bytes(data)
        return path

    def _image_file(self, reference: str) -> str:
        """Images live in the blobs table: written out to this machine's cache on first use."""
        if not str(reference).startswith(BLOB_PREFIX):
            return super()._image_file(reference)
        name = str(reference).removeprefix(BLOB_PREFIX)
        path = self.folder / "images" / name[:2] / name
        if not path.is_file():
            row = self._conn.execute("SELECT data FROM blobs WHERE content_hash = ?", (name.rsplit(".", 1)[0],)).fetchone()
            if row is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                with atomic_output(path) as tmp:
                    tmp.write_bytes(bytes(row[0]))
        return str(path)

    def stats(self) -> dict[str, Any]:
        out = super().stats()
        out["catalog_dir"] = f"postgres schema {postgres_options(self.settings).schema_name}"
        out["disk_bytes"] = int(self._conn.execute(
            "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND c.relkind = 'r'"
        ).fetchone()[0])
        return out


def read_thumbnail(settings: Settings, item_id: int) -> bytes | None:
    """An item's thumbnail JPEG read without opening the catalog (the gateway serves it so);
    None for an unknown item or a database with no catalog yet."""
    conn = PgConnection(settings)
    if schema_version(conn) == 0:
        return None
    row = conn.execute(THUMBNAIL_QUERY, (int(item_id),)).fetchone()
    return bytes(row[0]) if row else None


def _redacted(url: str) -> str:
    """The URL without its password, for messages."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    userinfo, _, host = rest.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}{':***' if ':' in userinfo else ''}@{host}"

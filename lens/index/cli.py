"""`lens index add|remove|clear|stats|search` and `lens demo-catalog`.

Imported by `lens --help`, so torch and faiss are imported inside the commands only.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

from lens.errors import BadInputError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
META_COLUMNS = {"file", "title", "url", "external_id"}
# Save every this many added items, so an interrupted `index add` keeps what it did
# (re-running it skips the images already in, by content hash).
CHECKPOINT_EVERY = 1024


def _settings():
    from lens.config import get_settings

    return get_settings()


def _limit_threads(bulk: bool = True) -> None:
    """Indexing from the CLI runs alone: one intra-op thread per core (lens.threads); a single
    search follows the per-request policy."""
    from lens.threads import apply_settings_policy

    apply_settings_policy(_settings(), bulk=bulk)


def _open(create: bool = False):
    from lens.embed import create_embedder
    from lens.index import open_catalog

    settings = _settings()
    catalog = open_catalog(settings, create_embedder(settings), create=create)
    if catalog is None:
        raise BadInputError(
            f"no catalog in {settings.catalog_dir} yet; build one with `lens index add DIR` "
            "or `lens demo-catalog`"
        )
    return catalog


def read_meta(path: Path) -> dict[str, dict[str, Any]]:
    """Rows of items.csv / items.jsonl keyed by their `file` column (a path relative to DIR,
    or a bare file name). Columns besides file/title/url/external_id go into `extra`. Rows
    sharing an external_id are one item with several reference images (the first file, in
    path order, gives the item its title and metadata)."""
    if not path.is_file():
        raise BadInputError(f"{path}: no such metadata file")
    rows: list[dict[str, Any]]
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    elif path.suffix.lower() in (".jsonl", ".ndjson"):
        rows = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except (ValueError, RecursionError) as exc:
                    raise BadInputError(f"{path}:{number}: not JSON (or nested too deep): {exc}") from None
    else:
        raise BadInputError(f"{path}: metadata must be .csv or .jsonl")
    meta = {}
    for number, row in enumerate(rows, 1):
        if not isinstance(row, dict) or not row.get("file"):
            raise BadInputError(f"{path}: row {number} has no 'file' column")
        _check_row(row, f"{path}: row {number}")
        meta[str(row["file"])] = row
    return meta


def _check_row(row: dict[str, Any], where: str) -> None:
    """The API's metadata limits (settings.limits) for a row of items.csv / items.jsonl: the
    catalog must never fail half-way through an add because of one row."""
    limits = _settings().limits
    try:
        text = json.dumps(row, ensure_ascii=False)
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadInputError(f"{where}: a value is not valid Unicode (a lone surrogate)") from None
    except (RecursionError, ValueError):
        raise BadInputError(f"{where}: nested too deep") from None
    longest = {"title": limits.max_title_chars, "url": limits.max_url_chars,
               "external_id": limits.max_external_id_chars}
    for name, most in longest.items():
        if len(str(row.get(name) or "")) > most:
            raise BadInputError(f"{where}: '{name}' is longer than {most} characters")
    extra = {k: v for k, v in row.items() if k not in META_COLUMNS}
    if len(json.dumps(extra, separators=(",", ":"), ensure_ascii=False).encode()) > limits.max_extra_bytes:
        raise BadInputError(f"{where}: its other columns (`extra`) exceed {limits.max_extra_bytes} bytes as JSON")


def _new_item(image: Path, root: Path, meta: dict[str, dict[str, Any]]):
    from lens.index.catalog import NewItem

    row = meta.get(image.relative_to(root).as_posix()) or meta.get(image.name) or {}
    extra = {k: v for k, v in row.items() if k not in META_COLUMNS and v not in (None, "")}
    return NewItem(
        image,
        title=str(row.get("title") or image.stem),
        url=row.get("url") or None,
        external_id=str(row["external_id"]) if row.get("external_id") else None,
        extra=extra,
    )


def add_folder(catalog, items: list, desc: str) -> list:
    """Add NewItems with a tqdm progress bar, saving every CHECKPOINT_EVERY items; images
    sharing an external_id (with each other or with an item already in) join one item."""
    from tqdm import tqdm

    outcomes = []
    with tqdm(total=len(items), desc=desc, unit="img", file=sys.stderr) as bar:
        for start in range(0, len(items), CHECKPOINT_EVERY):
            chunk = items[start : start + CHECKPOINT_EVERY]
            outcomes += catalog.add_images(chunk, progress=bar.update, join_external_id=True)
            catalog.save()
    return outcomes


def _report(outcomes: list, catalog) -> None:
    counts = {s: sum(o.status == s for o in outcomes) for s in ("added", "duplicate", "failed")}
    images = catalog.image_count()
    print(f"added {counts['added']}, already present {counts['duplicate']}, skipped {counts['failed']}; "
          f"catalog now holds {catalog.count()} items" + (f" ({images} images)" if images != catalog.count() else ""))
    for o in outcomes:
        if o.status == "failed":
            print(f"  skipped {o.source}: {o.message}")


def cmd_index_add(args: argparse.Namespace) -> int:
    root = args.dir
    if not root.is_dir():
        raise BadInputError(f"{root}: not a folder")
    meta = read_meta(args.meta) if args.meta else {}
    images = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise BadInputError(f"{root}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found")
    _limit_threads()
    catalog = _open(create=True)
    try:
        outcomes = add_folder(catalog, [_new_item(p, root, meta) for p in images], "indexing")
        _report(outcomes, catalog)
    finally:
        catalog.close()
    return 0


def _all_items(catalog, page: int = 1000) -> list:
    items, offset = [], 0
    while batch := catalog.items(offset=offset, limit=page):
        items += batch
        offset += len(batch)
    return items


def demo_item_ids(catalog) -> list[int]:
    """Ids of the items `lens demo-catalog` added (their extra.source says so)."""
    from lens.index.demo import DEMO_SOURCE

    return [item.id for item in _all_items(catalog) if item.extra.get("source") == DEMO_SOURCE]


def cmd_index_remove(args: argparse.Namespace) -> int:
    if not args.ids and not args.demo:
        raise BadInputError("name the item ids to remove, or --demo to remove the demo catalog's items")
    catalog = _open()
    try:
        wanted = list(args.ids) + (demo_item_ids(catalog) if args.demo else [])
        removed = catalog.remove(wanted)
        catalog.save()
        left = catalog.count()
    finally:
        catalog.close()
    missing = sorted(set(args.ids) - set(removed))
    print(f"removed {len(removed)} item(s)" + (f"; not found: {', '.join(map(str, missing))}" if missing else "")
          + f"; catalog now holds {left} items")
    return 0 if not missing else 2


def cmd_index_clear(args: argparse.Namespace) -> int:
    catalog = _open()
    try:
        count = catalog.count()
        if not args.yes:
            raise BadInputError(f"this removes all {count} items of the catalog in {catalog.folder}; "
                                "run `lens index clear --yes` to do it")
        removed = catalog.remove(item.id for item in _all_items(catalog))
        catalog.save()
    finally:
        catalog.close()
    print(f"removed {len(removed)} item(s); the catalog is empty (add yours with `lens index add DIR`)")
    return 0


def cmd_index_stats(args: argparse.Namespace) -> int:
    catalog = _open()
    try:
        stats = catalog.stats()
    finally:
        catalog.close()
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        for key, value in stats.items():
            print(f"{key:18} {value}")
    return 0


def cmd_index_search(args: argparse.Namespace) -> int:
    from lens.image import load_image_file
    from lens.pipeline import AnalyzeOptions, Pipeline, Timer

    settings = _settings()
    _limit_threads(bulk=False)
    image = load_image_file(args.photo, max_bytes=settings.limits.max_upload_bytes, max_pixels=settings.limits.max_pixels)
    pipeline = Pipeline(settings)
    if pipeline.catalog is None:
        raise BadInputError(f"no catalog in {settings.catalog_dir} yet; run `lens demo-catalog` or `lens index add DIR`")
    if args.region is None:
        box, what = (0.0, 0.0, float(image.width), float(image.height)), "whole photo"
    else:
        regions = pipeline.find_regions(image, AnalyzeOptions(search=False, text=False), Timer())
        chosen = [r for r in regions if r.id == args.region]
        if not chosen:
            listed = ", ".join(f"{r.id} ({r.label or r.kind})" for r in regions) or "none"
            raise BadInputError(f"no region {args.region} in {args.photo}; regions: {listed}")
        box, what = chosen[0].box, f"region {args.region} ({chosen[0].label or chosen[0].kind})"
    (matches,) = pipeline.search_boxes(image, [box], k=args.k)
    if args.json:
        print(json.dumps([m.model_dump() for m in matches], indent=2))
        return 0
    print(f"{what} [{', '.join(f'{v:.0f}' for v in box)}]: {len(matches)} match(es)")
    for rank, m in enumerate(matches, 1):
        print(f"  {rank:2}. {m.score:.3f}  #{m.item_id:<6} {m.title}")
    return 0


def cmd_demo_catalog(args: argparse.Namespace) -> int:
    from lens.index.demo import DEMO_SOURCE, LICENCE, TUX_STAMPS, tux_stamps

    settings = _settings()
    from lens.index import catalog_state

    if args.if_empty and catalog_state(settings) is not None:
        catalog = _open()
        try:
            if catalog.count() > 0:
                print(f"catalog in {catalog.stats()['catalog_dir']} holds {catalog.count()} items; leaving it as is")
                return 0
        finally:
            catalog.close()
    stamps = tux_stamps()
    if not stamps:
        raise BadInputError(
            f"no Tux Paint stamps in {TUX_STAMPS}; install the Debian package tuxpaint-stamps-default "
            "(`make setup` does)"
        )
    from lens.index.catalog import NewItem

    _limit_threads()
    print(f"demo catalog: {len(stamps)} photo stamps from {TUX_STAMPS}; licence {LICENCE}")
    items = [
        NewItem(s.path, title=s.title, extra={"class": s.label, "licence": LICENCE, "source": DEMO_SOURCE})
        for s in stamps
    ]
    catalog = _open(create=True)
    try:
        outcomes = add_folder(catalog, items, "demo catalog")
        _report(outcomes, catalog)
    finally:
        catalog.close()
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    index = sub.add_parser("index", help="build, change and query the catalog")
    isub = index.add_subparsers(dest="index_command", required=True)

    p = isub.add_parser("add", help="add every image under DIR (re-adding a file is a no-op)")
    p.add_argument("dir", type=Path)
    p.add_argument("--meta", type=Path, help=(
        "items.csv (header row) or items.jsonl (one object a line): `file` (path under DIR, or a "
        "bare file name), optional title, url, external_id; any other column goes into `extra`; rows sharing an external_id make one item with several "
        "images"))
    p.set_defaults(func=cmd_index_add)

    p = isub.add_parser("remove", help="remove items by id, or every demo item (--demo)")
    p.add_argument("ids", type=int, nargs="*", metavar="ID")
    p.add_argument("--demo", action="store_true",
                   help="remove the items `lens demo-catalog` added, keep the rest")
    p.set_defaults(func=cmd_index_remove)

    p = isub.add_parser("clear", help="remove every item (the catalog stays, empty)")
    p.add_argument("--yes", action="store_true", help="really remove them all")
    p.set_defaults(func=cmd_index_clear)

    p = isub.add_parser("stats", help="items, embedder, index kind, size on disk")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_index_stats)

    p = isub.add_parser("search", help="catalog matches for a photo, or for one of its regions")
    p.add_argument("photo", type=Path)
    p.add_argument("--region", type=int, help="search this region (ids as `lens analyze` prints them)")
    p.add_argument("-k", type=int, default=10, help="matches to list (default 10)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_index_search)

    p = sub.add_parser("demo-catalog", help="build a demo catalog from Debian's Tux Paint photo stamps")
    p.add_argument("--if-empty", action="store_true", help="do nothing when a catalog already has items")
    p.set_defaults(func=cmd_demo_catalog)

    db = sub.add_parser("db", help="the catalog database (catalog.backend = postgres)")
    dsub = db.add_subparsers(dest="db_command", required=True)
    p = dsub.add_parser("migrate", help="apply the schema migrations the database has not had (idempotent)")
    p.set_defaults(func=cmd_db_migrate)


def cmd_db_migrate(args: argparse.Namespace) -> int:
    settings = _settings()
    if settings.catalog.backend != "postgres":
        raise BadInputError(f"catalog.backend is {settings.catalog.backend!r}; `lens db migrate` is for "
                            "postgres (set LENS_CATALOG__BACKEND=postgres and LENS_CATALOG__OPTIONS__URL)")
    from lens.index.postgres import migrate, postgres_options

    applied = migrate(settings)
    schema = postgres_options(settings).schema_name
    print(f"schema {schema}: applied {', '.join(applied)}" if applied else f"schema {schema}: up to date")
    return 0

"""The versioned JSON API under /api/v1, plus /healthz and /readyz."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from flask import Blueprint, current_app, jsonify, request, send_file, url_for

from lens.pipeline import AnalyzeOptions
from web.errors import ApiError, bad_request
from web.gateway import Gateway
from web.requests import (
    bool_field,
    box_field,
    check_json_value,
    int_field,
    language_from,
    parse_json,
)
from web.requests import read_fields as _read_fields
from web.security import require_api_key
from workers.uploads import upload_exists

api = Blueprint("api", __name__)

# What a catalog item carries besides its image; `metadata` is accepted for `extra`.
ITEM_FIELDS = ("title", "url", "external_id", "extra", "metadata")
# Item ids are SQLite integers: a larger one names no item (and would overflow sqlite3).
MAX_ITEM_ID = 2**63 - 1


def gateway() -> Gateway:
    return current_app.extensions["lens_gateway"]


def read_fields(req) -> tuple[bytes | None, dict[str, Any]]:
    return _read_fields(req, gateway().settings.limits.max_json_depth)


def _json(body: Any, status: int = 200):
    response = jsonify(body)
    response.status_code = status
    return response


@api.get("/healthz")
def healthz():
    return _json({"status": "ok"})


@api.get("/readyz")
def readyz():
    checks = gateway().readiness()
    ready = all(c["ok"] for c in checks.values())
    reasons = [f"{name}: {c['detail']}" for name, c in checks.items() if not c["ok"]]
    return _json({"ready": ready, "checks": checks, "reasons": reasons}, 200 if ready else 503)


@api.post("/api/v1/analyze")
def analyze():
    gw = gateway()
    data, fields = read_fields(request)
    accept = request.accept_languages.best if request.headers.get("Accept-Language") else None
    options = AnalyzeOptions(
        target_lang=language_from(fields, request.headers.get("Accept-Language"), accept),
        max_regions=int_field(fields, "max_regions", 1, 50),
        regions=bool_field(fields, "regions", True),
        text=bool_field(fields, "text", True),
        search=bool_field(fields, "search", True),
    )
    image = gw.decode(data)
    # RFC 7240: a client that follows the job's stages asks for 202 even from the embedded server.
    wait = "respond-async" not in request.headers.get("Prefer", "").lower()
    status, body = gw.analyze(data, image, options, wait=wait)
    response = _json(body, status)
    if status == 202:
        response.headers["Location"] = body["status_url"]
    return response


@api.get("/api/v1/jobs/<job_id>")
def job(job_id: str):
    return _json(gateway().job(job_id))


def _query_text(fields: dict[str, Any]) -> str | None:
    """The `text` of a search, or None when none was sent; empty, not a string, or longer
    than text_search.max_query_chars is a 400."""
    if "text" not in fields or fields["text"] is None:
        return None
    text = fields["text"]
    if not isinstance(text, str):
        raise bad_request("'text' must be a string", "bad_text")
    check_json_value(text, 1)
    text = " ".join(text.split())
    if not text:
        raise bad_request("'text' is empty; send some words to search for", "empty_text")
    most = gateway().settings.text_search.max_query_chars
    if len(text) > most:
        raise bad_request(f"'text' is {len(text)} characters; the limit is {most}", "text_too_long")
    return text


@api.post("/api/v1/search")
def search():
    """Search the catalog by a photo (+ box), by words (`text`), or both (multisearch: the
    photo's shortlist re-ranked by the words)."""
    gw = gateway()
    data, fields = read_fields(request)
    k = int_field(fields, "k", 1, 100)
    text = _query_text(fields)
    if text is not None and data is None and not fields.get("job_id"):
        if "box" in fields and fields["box"] is not None:
            raise bad_request("a 'box' needs a photo: send an 'image' or a 'job_id' with it", "box_without_image")
        return _json({"text": text, "matches": gw.search_text(text, k)})
    if data is not None:
        image = gw.decode(data)
        upload, width, height, image_id = gw.store_upload(data, image), image.width, image.height, image.sha256
    elif fields.get("job_id"):
        if not isinstance(fields["job_id"], str):
            raise bad_request("'job_id' must be a string")
        record = gw.jobs.record(fields["job_id"])
        if not upload_exists(gw.settings, record.upload_ref):
            raise ApiError(410, "upload_expired", "the photo of that job is no longer stored; send it again")
        upload, width, height, image_id = record.upload_ref, record.width, record.height, record.image_id
    else:
        raise ApiError(400, "missing_image", (
            "send an 'image' (file or base64) or the 'job_id' of an earlier analysis, "
            "or 'text' to search by words"))
    box = box_field(fields, width, height)
    matches = gw.search(upload, box, k, text)
    body = {"image_id": image_id, "box": list(box), "matches": matches}
    if text is not None:
        body["text"] = text
    return _json(body)


# -- catalog items ---------------------------------------------------------------------------
def _item_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """The item fields of a request, checked against settings.limits (400/413 otherwise)."""
    limits = gateway().settings.limits
    unknown = sorted(set(fields) - set(ITEM_FIELDS))
    if unknown:
        raise bad_request(f"unknown item field(s): {', '.join(unknown)}; known: {', '.join(ITEM_FIELDS)}")
    out = dict(fields)
    if "metadata" in out:
        out["extra"] = out.pop("metadata")
    if isinstance(out.get("extra"), str):  # a multipart form field
        out["extra"] = parse_json(out["extra"], limits.max_json_depth)
    if "extra" in out and not isinstance(out["extra"], dict):
        raise bad_request("'extra' must be a JSON object")
    if "extra" in out:
        check_json_value(out["extra"], limits.max_json_depth)
        size = len(json.dumps(out["extra"], separators=(",", ":"), ensure_ascii=False).encode())
        if size > limits.max_extra_bytes:
            raise ApiError(413, "extra_too_large", (
                f"'extra' is {size} bytes as JSON; the limit is {limits.max_extra_bytes} bytes"))
    if "title" in out and out["title"] is None:
        out["title"] = ""  # null clears the title, as it clears url and external_id
    longest = {"title": limits.max_title_chars, "url": limits.max_url_chars,
               "external_id": limits.max_external_id_chars}
    for name, most in longest.items():
        if name in out and out[name] is not None:
            if not isinstance(out[name], str):
                raise bad_request(f"'{name}' must be a string")
            check_json_value(out[name], 1)
            if len(out[name]) > most:
                raise bad_request(f"'{name}' is {len(out[name])} characters; the limit is {most}", "too_long")
    return out


def _checked_item_id(item_id: int) -> int:
    if item_id > MAX_ITEM_ID:
        raise ApiError(404, "item_not_found", f"no catalog item with id {item_id}")
    return item_id


def _with_thumbnail(item: dict[str, Any]) -> dict[str, Any]:
    item["thumbnail_url"] = url_for("api.item_thumbnail", item_id=int(item["id"]))
    return item


@api.get("/api/v1/items/<int:item_id>")
def item(item_id: int):
    item_id = _checked_item_id(item_id)
    out = gateway().call("lens.item", item_id)
    return _json({"item": _with_thumbnail(out["item"])})


@api.get("/api/v1/items/<int:item_id>/thumbnail")
def item_thumbnail(item_id: int):
    item_id = _checked_item_id(item_id)
    gw = gateway()
    if gw.settings.catalog.backend == "postgres":
        # Straight from the database: no disk shared with the worker that wrote it.
        from lens.index.postgres import read_thumbnail

        data = read_thumbnail(gw.settings, item_id)
        if data is None:
            raise ApiError(404, "no_thumbnail", f"item {item_id} has no thumbnail")
        response = send_file(io.BytesIO(data), mimetype="image/jpeg", max_age=3600)
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response
    out = gw.call("lens.item", item_id)
    path = out.get("thumbnail_path")
    if not path or not Path(path).is_file():
        raise ApiError(404, "no_thumbnail", f"item {item_id} has no thumbnail")
    response = send_file(path, max_age=3600)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@api.post("/api/v1/items")
def add_item():
    gw = gateway()
    require_api_key(gw.settings, request.headers.get("Authorization"))
    data, fields = read_fields(request)
    fields = _item_fields(fields)  # cheap checks before the photo is decoded
    image = gw.decode(data)
    upload = gw.store_upload(data, image)
    out = gw.call("lens.index.add", upload, fields)
    return _json({"item": _with_thumbnail(out["item"])}, 201)


@api.post("/api/v1/items/<int:item_id>/images")
def add_item_image(item_id: int):
    """One more reference image of an item (another view, a shelf photo): search scores the
    item by its best image. 201 when added, 200 when this item has that image already."""
    gw = gateway()
    require_api_key(gw.settings, request.headers.get("Authorization"))
    item_id = _checked_item_id(item_id)
    data, fields = read_fields(request)
    if fields:
        raise bad_request(f"unexpected field(s): {', '.join(sorted(fields))}; send only 'image'")
    image = gw.decode(data)
    upload = gw.store_upload(data, image)
    out = gw.call("lens.index.add_image", item_id, upload)
    status = 201 if out.pop("status") == "added" else 200
    return _json({"item": _with_thumbnail(out["item"]), "image_id": out["image_id"]}, status)


@api.put("/api/v1/items/<int:item_id>")
def update_item(item_id: int):
    gw = gateway()
    require_api_key(gw.settings, request.headers.get("Authorization"))
    item_id = _checked_item_id(item_id)
    _, fields = read_fields(request)
    if not fields:
        raise bad_request(f"nothing to change; send some of: {', '.join(ITEM_FIELDS)}")
    out = gw.call("lens.index.update", item_id, _item_fields(fields))
    return _json({"item": _with_thumbnail(out["item"])})


@api.delete("/api/v1/items/<int:item_id>")
def delete_item(item_id: int):
    gw = gateway()
    require_api_key(gw.settings, request.headers.get("Authorization"))
    item_id = _checked_item_id(item_id)
    return _json(gw.call("lens.index.remove", item_id))


@api.get("/api/v1/languages")
def languages():
    """Installed translation pairs, and the targets reachable from each source language."""
    from lens.translate import installed_languages
    from web.requests import known_language

    source = request.args.get("source")
    if source is not None:
        code = source.strip().lower()
        if not (code.isascii() and code.isalpha() and len(code) in (2, 3) and known_language(code)):
            raise bad_request(f"'source' {source!r} is not a language code such as 'en' or 'pt'")
        source = code
    return _json(installed_languages(gateway().settings, source))


@api.get("/api/v1/openapi.json")
def openapi():
    from web.openapi import openapi_document

    return _json(openapi_document())

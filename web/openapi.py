"""The OpenAPI 3.1 document of the API. Result schemas come from the pydantic models in
lens.types, so the document cannot drift from what the workers produce; tests validate real
responses against it."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from lens import __version__
from lens.config import LimitsConfig, TextSearchConfig
from lens.stages import PROGRESS
from lens.types import AnalyzeResult, Match

REF = "#/components/schemas/{model}"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _model_schemas() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for model in (AnalyzeResult, Match):
        schema = model.model_json_schema(ref_template=REF, mode="serialization")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return schemas


ERROR = {
    "type": "object",
    "required": ["error"],
    "additionalProperties": False,
    "properties": {"error": {
        "type": "object", "required": ["code", "message"], "additionalProperties": False,
        "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
    }},
}

JOB = {
    "type": "object",
    "required": ["job_id", "status"],
    "properties": {
        "job_id": {"type": ["string", "null"], "description": "null for a cached result"},
        "status": {"enum": ["queued", "running", "done", "failed"]},
        "message": {"type": ["string", "null"], "description": "why the job failed"},
        "status_url": {"type": "string"},
        "image_id": {"type": "string"},
        "created": {"type": "number"},
        "cached": {"type": "boolean"},
        "stage": {"enum": list(PROGRESS), "description": "the latest stage the job entered"},
        "stages": {"type": "array", "description": "every stage entered, oldest first", "items": {
            "type": "object", "required": ["stage", "at"],
            "properties": {"stage": {"enum": list(PROGRESS)}, "at": {"type": "number"}}}},
        "result": _ref("AnalyzeResult"),
    },
}

SEARCH = {
    "type": "object",
    "required": ["matches"],
    "additionalProperties": False,
    "description": "image_id and box for a photo search; text for a search by words (alone or with a photo)",
    "properties": {
        "image_id": {"type": "string"},
        "box": {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4},
        "text": {"type": "string", "description": "the words searched for, whitespace collapsed"},
        "matches": {"type": "array", "items": _ref("Match")},
    },
}

ITEM = {
    "type": "object",
    "required": ["item"],
    "properties": {"item": {"type": "object", "required": ["id"], "properties": {
        "id": {"type": "integer"}, "title": {"type": ["string", "null"]},
        "url": {"type": ["string", "null"]}, "thumbnail_url": {"type": "string"},
        "images": {"type": "integer", "minimum": 1, "description": "reference images; search uses the best"},
    }}},
}
ITEM_IMAGE = {
    "type": "object",
    "required": ["item", "image_id"],
    "properties": {"item": ITEM["properties"]["item"], "image_id": {"type": ["integer", "null"]}},
}

CHECK = {"type": "object", "required": ["ok", "detail"],
         "properties": {"ok": {"type": "boolean"}, "detail": {"type": "string"}}}
READY = {
    "type": "object",
    "required": ["ready", "checks", "reasons"],
    "additionalProperties": False,
    "properties": {
        "ready": {"type": "boolean"},
        "checks": {"type": "object", "additionalProperties": _ref("Check")},
        "reasons": {"type": "array", "items": {"type": "string"}},
    },
}
DELETED = {"type": "object", "required": ["deleted"], "properties": {"deleted": {"type": "integer"}}}
HEALTH = {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}}

OPTIONS = {
    "target_lang": {"type": "string", "description": (
        "viewer's language: an ISO 639-1 code, optionally with script/region subtags (pt-BR); "
        "another value is a 400 naming it. Default: Accept-Language, then the server's default")},
    "max_regions": {"type": "integer", "minimum": 1, "maximum": 50},
    "regions": {"type": "boolean", "default": True},
    "text": {"type": "boolean", "default": True},
    "search": {"type": "boolean", "default": True},
}


def _body(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    multipart = {"type": "object", "properties": {
        **{k: ({"type": "string", "format": "binary"} if k == "image" else v) for k, v in properties.items()}}}
    as_json = {"type": "object", "properties": {
        **{k: ({"type": "string", "contentEncoding": "base64"} if k == "image" else v) for k, v in properties.items()}}}
    if required:
        multipart["required"] = as_json["required"] = required
    return {"required": True, "content": {
        "multipart/form-data": {"schema": multipart}, "application/json": {"schema": as_json}}}


def _responses(**by_status: tuple[str, str | None]) -> dict[str, Any]:
    out = {}
    for status, (description, schema) in by_status.items():
        code = status.removeprefix("s")
        entry: dict[str, Any] = {"description": description}
        if schema:
            entry["content"] = {"application/json": {"schema": _ref(schema)}}
        out[code] = entry
    return out


ERRORS = {"s400": ("bad input", "Error"), "s413": ("photo too large", "Error"),
          "s415": ("not a supported image or body type", "Error"),
          "s503": ("queue or catalog unavailable", "Error"),
          "s507": ("the server's disk is full", "Error")}
LIMITED = {"s429": ("over this client's rate limit; `Retry-After` says when to try again", "Error")}
AUTH = {"s401": ("missing or wrong API key", "Error"),
        "s503": ("writes disabled (no API key configured) or queue unavailable", "Error")}
WRITE = {"s504": ("no index worker answered in time", "Error"),
         "s507": ("the server's disk is full (the write was rolled back)", "Error")}
# Item ids are SQLite integers; a larger one is answered 404 like any unknown id.
ITEM_ID = [{"name": "item_id", "in": "path", "required": True,
            "schema": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}}]
LIMITS = LimitsConfig()
ITEM_PROPS = {"image": {},
              "title": {"type": ["string", "null"], "maxLength": LIMITS.max_title_chars},
              "url": {"type": ["string", "null"], "maxLength": LIMITS.max_url_chars},
              "external_id": {"type": ["string", "null"], "maxLength": LIMITS.max_external_id_chars},
              "extra": {"type": "object", "description": (
                  f"free-form attributes, at most {LIMITS.max_extra_bytes} bytes as JSON (else 413) "
                  f"and {LIMITS.max_json_depth} levels deep")}}


LANGUAGES = {
    "type": "object", "required": ["pairs", "sources", "targets", "pivot_language"],
    "properties": {
        "pivot_language": {"type": ["string", "null"]},
        "pairs": {"type": "array", "items": {"type": "object", "required": ["source", "target"],
                                             "properties": {"source": {"type": "string"}, "target": {"type": "string"}}}},
        "sources": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}},
        "targets": {"type": "array", "items": {"type": "string"}},
    },
}


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    schemas = _model_schemas() | {"Error": ERROR, "Job": JOB, "SearchResponse": SEARCH,
                                  "ItemResponse": ITEM, "ItemImageResponse": ITEM_IMAGE, "Check": CHECK, "Ready": READY,
                                  "Health": HEALTH, "Deleted": DELETED, "Languages": LANGUAGES}
    paths: dict[str, Any] = {
        "/healthz": {"get": {"summary": "the process is up", "responses": _responses(s200=("up", "Health"))}},
        "/readyz": {"get": {"summary": "Redis reachable, models present, catalog built", "responses": _responses(
            s200=("ready", "Ready"), s503=("not ready; `reasons` says why", "Ready"))}},
        "/api/v1/analyze": {"post": {
            "summary": "find regions and text in a photo",
            "parameters": [{"name": "Accept-Language", "in": "header", "required": False, "schema": {"type": "string"}},
                           {"name": "Prefer", "in": "header", "required": False, "schema": {"type": "string"},
                            "description": "`respond-async`: answer 202 at once even in embedded mode"}],
            "requestBody": _body({"image": {}, **OPTIONS}, ["image"]),
            "responses": _responses(s200=("finished (cached, or embedded mode)", "Job"),
                                    s202=("queued; poll status_url", "Job"), **ERRORS, **LIMITED),
        }},
        "/api/v1/languages": {"get": {
            "summary": "installed translation pairs, and the targets reachable from each source language",
            "parameters": [{"name": "source", "in": "query", "required": False, "schema": {"type": "string"},
                            "description": "only this source language (ISO 639-1)"}],
            "responses": _responses(s200=("what the server can translate", "Languages"),
                                    s400=("'source' is not a language code", "Error")),
        }},
        "/api/v1/jobs/{job_id}": {"get": {
            "summary": "a job's status, and its result when done",
            "parameters": [{"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": _responses(s200=("the job", "Job"), s404=("no such job", "Error"), s503=ERRORS["s503"]),
        }},
        "/api/v1/jobs/{job_id}/events": {"get": {
            "summary": "the job's stages as server-sent events (`progress`, then `end` with the job)",
            "parameters": [{"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": {"description": "text/event-stream", "content": {"text/event-stream": {}}},
                          "404": {"description": "no such job", "content": {"application/json": {"schema": _ref("Error")}}}},
        }},
        "/api/v1/search": {"post": {
            "summary": "catalog matches for a box of a photo (or of an earlier job's photo), for words, or both",
            "description": (
                "Send an `image` or a `job_id` (with an optional `box`) for a photo search; `text` alone to search "
                "the catalog's titles and descriptions by words (sentence embedding fused with a typo-tolerant "
                "keyword match); both for a multisearch: the photo's shortlist re-ranked by the words. Empty "
                f"text, or text over {TextSearchConfig().max_query_chars} characters, is a 400; text with no "
                "catalog built is a 409."),
            "requestBody": _body({"image": {}, "job_id": {"type": "string"},
                                  "box": {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4},
                                  "text": {"type": "string", "minLength": 1,
                                           "maxLength": TextSearchConfig().max_query_chars},
                                  "k": {"type": "integer", "minimum": 1, "maximum": 100}}),
            "responses": _responses(s200=("matches", "SearchResponse"), s404=("no such job", "Error"),
                                    s409=("a search by words, and no catalog has been built yet", "Error"),
                                    s410=("that job's photo is no longer stored", "Error"),
                                    s504=("no worker answered in time", "Error"), **ERRORS, **LIMITED),
        }},
        "/api/v1/items": {"post": {
            "summary": "add an item to the catalog", "security": [{"bearer": []}],
            "requestBody": _body(ITEM_PROPS, ["image"]),
            "responses": _responses(s201=("added", "ItemResponse"), s400=ERRORS["s400"],
                                    s409=("the catalog was built with another embedder", "Error"),
                                    s413=("photo or `extra` too large", "Error"), s415=ERRORS["s415"],
                                    **AUTH, **WRITE),
        }},
        "/api/v1/items/{item_id}": {
            "get": {"summary": "one catalog item", "parameters": ITEM_ID,
                    "responses": _responses(s200=("the item", "ItemResponse"), s404=("no such item", "Error"),
                                            s503=("no catalog built yet, or queue unavailable", "Error"),
                                            s504=WRITE["s504"])},
            "put": {"summary": "change an item's fields", "security": [{"bearer": []}], "parameters": ITEM_ID,
                    "requestBody": {"required": True, "content": {"application/json": {"schema": {
                        "type": "object", "minProperties": 1,  # an empty body is a 400: nothing to change
                        "properties": {k: v for k, v in ITEM_PROPS.items() if k != "image"}}}}},
                    "responses": _responses(s200=("changed", "ItemResponse"),
                                            s400=("bad input, or nothing to change (an empty body)", "Error"),
                                            s404=("no such item", "Error"), s413=("`extra` too large", "Error"),
                                            s415=("not a JSON or multipart body", "Error"), **AUTH, **WRITE)},
            "delete": {"summary": "remove an item", "security": [{"bearer": []}], "parameters": ITEM_ID,
                       "responses": _responses(s200=("removed", "Deleted"), s404=("no such item", "Error"),
                                               **AUTH, **WRITE)},
        },
        "/api/v1/items/{item_id}/images": {"post": {
            "summary": "add one more reference image to an item (search scores an item by its best image)",
            "security": [{"bearer": []}], "parameters": ITEM_ID,
            "requestBody": _body({"image": {}}, ["image"]),
            "responses": _responses(s201=("added", "ItemImageResponse"),
                                    s200=("the item has this image already", "ItemImageResponse"),
                                    s404=("no such item", "Error"),
                                    s409=("the image belongs to another item", "Error"),
                                    s413=ERRORS["s413"], s415=ERRORS["s415"], s400=ERRORS["s400"], **AUTH),
        }},
        "/api/v1/items/{item_id}/thumbnail": {"get": {
            "summary": "the item's thumbnail image", "parameters": ITEM_ID,
            "responses": {"200": {"description": "image", "content": {"image/*": {}}},
                          "404": {"description": "no such item or no thumbnail",
                                  "content": {"application/json": {"schema": _ref("Error")}}},
                          **_responses(s503=("no catalog built yet, or queue unavailable", "Error"),
                                       s504=WRITE["s504"])},
        }},
        "/api/v1/openapi.json": {"get": {"summary": "this document", "responses": {"200": {"description": "OpenAPI 3.1"}}}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "lens", "version": __version__,
                 "description": "Self-hosted visual search: regions, catalog matches, text and translation."},
        "paths": paths,
        "components": {"schemas": schemas,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }

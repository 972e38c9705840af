"""Reading what a client sent: the photo (multipart or base64 JSON) and the options."""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from flask import Request

from lens.types import Box
from web.errors import ApiError, bad_request

_LANG = re.compile(r"^[a-z]{2,3}$")
# An explicit target_lang: a language, then optional script (Latn), region (BR) or UN M.49
# area (419) subtags. Anything else is refused, not silently cut to its first two letters.
_LANG_TAG = re.compile(r"^[a-z]{2,3}(-([a-z]{4}|[a-z]{2}|[0-9]{3}))*$")


def read_fields(request: Request, max_depth: int = 32) -> tuple[bytes | None, dict[str, Any]]:
    """(photo bytes or None, other fields) from a multipart form or a JSON body nested at
    most `max_depth` levels."""
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("image")
        if None in request.form or None in request.files:
            # A part whose Content-Disposition has no (decodable) name: werkzeug keys it None.
            raise bad_request("a multipart form part has no field name", "bad_form")
        fields: dict[str, Any] = {k: v for k, v in request.form.items()}
        return (upload.read() if upload is not None else None), fields
    if request.mimetype == "application/json" or request.is_json:
        body = parse_json(request.get_data(cache=True), max_depth)
        if not isinstance(body, dict):
            raise bad_request("the body is not a JSON object", "bad_json")
        fields = {k: v for k, v in body.items() if k not in ("image", "options")}
        if isinstance(body.get("options"), dict):
            fields.update(body["options"])
        image = body.get("image")
        return (decode_base64_image(image) if image is not None else None), fields
    if not request.content_length:
        return None, {}
    raise ApiError(
        415, "unsupported_media_type",
        "send multipart/form-data with an 'image' file, or JSON with a base64 'image' "
        f"(got {request.mimetype or 'no content type'})",
    )


def parse_json(raw: bytes | str, max_depth: int) -> Any:
    """JSON text -> value; not JSON, nested deeper than max_depth, or holding a lone surrogate
    (which no UTF-8 store or answer can carry) is a 400, never a RecursionError or a 500."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise bad_request(f"the JSON is nested deeper than {max_depth} levels", "json_too_deep") from None
    except ValueError:  # includes UnicodeDecodeError
        raise bad_request("the body is not valid JSON", "bad_json") from None
    check_json_value(value, max_depth)
    return value


def check_json_value(value: Any, max_depth: int) -> None:
    """Refuse containers nested deeper than max_depth and strings with lone surrogates
    (iteratively: a deep value must not exhaust the stack here either)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > max_depth:
                raise bad_request(f"the JSON is nested deeper than {max_depth} levels", "json_too_deep")
            children = list(item.items()) if isinstance(item, dict) else [(None, v) for v in item]
            for key, child in children:
                if key is not None:
                    _check_text(key)
                stack.append((child, depth + 1))
        elif isinstance(item, str):
            _check_text(item)


def _check_text(text: str) -> None:
    if text.isascii():  # the common case, and a base64 photo, without copying the string
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise bad_request("a string in the body is not valid Unicode (a lone surrogate such as \\ud800)",
                          "bad_unicode") from None


def decode_base64_image(value: Any) -> bytes:
    if not isinstance(value, str):
        raise bad_request("'image' must be a base64 string (optionally a data: URL)", "bad_base64")
    if value.startswith("data:"):
        _, _, value = value.partition(",")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise bad_request("'image' is not valid base64", "bad_base64") from None


def language_from(fields: dict[str, Any], accept_language: str | None, best_match: str | None) -> str | None:
    """target_lang from the request, else the first language of Accept-Language."""
    value = fields.get("target_lang")
    if value in (None, ""):
        if not best_match:
            return None
        value = best_match
        explicit = False
    else:
        explicit = True
    if not isinstance(value, str):
        raise bad_request("'target_lang' must be a language code such as 'en' or 'pt'")
    tag = value.strip().lower().replace("_", "-")
    code = tag.split("-")[0]
    if explicit and not _LANG_TAG.match(tag):
        raise bad_request(f"'target_lang' {value!r} is not a language tag such as 'en', 'pt' or 'pt-BR'")
    if not _LANG.match(code) or not known_language(code):
        if explicit:
            raise bad_request(f"'target_lang' {value!r} is not a language code such as 'en' or 'pt'")
        return None  # an odd Accept-Language is not the user's fault: use the default
    return code


def known_language(code: str) -> bool:
    """An ISO 639-1 code, or a 3-letter code (ISO 639-2/3: too many to list, taken on trust)."""
    from lens.langid import ISO_639_1

    return len(code) == 3 or code in ISO_639_1


def int_field(fields: dict[str, Any], name: str, low: int, high: int) -> int | None:
    value = fields.get(name)
    if value in (None, ""):
        return None
    try:
        number = int(value) if not isinstance(value, bool) else None
    except (TypeError, ValueError):
        number = None
    if number is None or not low <= number <= high or (isinstance(value, float) and value != number):
        raise bad_request(f"'{name}' must be a whole number from {low} to {high} (got {value!r})")
    return number


def bool_field(fields: dict[str, Any], name: str, default: bool) -> bool:
    value = fields.get(name)
    if value in (None, ""):
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise bad_request(f"'{name}' must be true or false (got {value!r})")


def box_field(fields: dict[str, Any], width: int, height: int) -> Box:
    """The box [x1, y1, x2, y2] in pixels, clipped to the image; the whole image if absent."""
    value = fields.get("box")
    if value in (None, ""):
        return (0.0, 0.0, float(width), float(height))
    if isinstance(value, str):
        text = value.strip()
        try:
            value = json.loads(text) if text.startswith("[") else [float(v) for v in text.split(",")]
        except (ValueError, RecursionError):
            value = None
    if isinstance(value, dict):
        value = [value.get(k) for k in ("x1", "y1", "x2", "y2")]
    ok = (
        isinstance(value, list | tuple)
        and len(value) == 4
        and all(isinstance(v, int | float) and not isinstance(v, bool) and v == v and abs(v) < 1e9 for v in value)
    )
    if not ok:
        raise bad_request("'box' must be four numbers [x1, y1, x2, y2] in pixels of the photo", "bad_box")
    x1, y1, x2, y2 = (float(v) for v in value)
    x1, x2 = sorted((min(max(x1, 0.0), width), min(max(x2, 0.0), width)))
    y1, y2 = sorted((min(max(y1, 0.0), height), min(max(y2, 0.0), height)))
    if x2 - x1 < 2 or y2 - y1 < 2:
        raise bad_request(
            f"'box' {list(value)} has no area inside the {width}x{height} photo", "bad_box"
        )
    return (x1, y1, x2, y2)

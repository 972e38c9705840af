"""Security headers on every response, whatever produced it (API, static UI, error handler).

The UI is plain files under /static with no inline script or style attribute, so the policy
allows scripts and styles from this origin only. Photos are shown from blob: URLs made in the
browser and thumbnails come from this origin, hence img-src 'self' blob: data:. The camera is
allowed for this origin only (the UI's capture input). The API key check for catalog writes
and private metrics lives here too.
"""

from __future__ import annotations

import hmac

from flask import Flask, Response, request

from lens.config import Settings
from web.errors import ApiError

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' blob: data:",
    "connect-src 'self'",
    "font-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    # For browsers that predate frame-ancestors.
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(self), microphone=(), geolocation=(), payment=(), usb=()",
}


def add_security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    # API answers are per request and may carry someone's OCR'd text: never cache them in
    # shared caches. Static files keep Flask's caching.
    if request.path.startswith("/api/") and "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = "no-store"
    if request.is_secure:
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    return response


def init_security(app: Flask) -> None:
    """Register the headers; call once from the app factory."""
    app.after_request(add_security_headers)


def init_request_timeouts(app: Flask, seconds: float) -> None:
    """Give each request's socket a read timeout and answer 408 when it fires while the body is
    read. A thread of either server otherwise waits forever on a client that sends part of a
    body and stops (gunicorn's --timeout does not cover gthread request threads)."""
    from werkzeug.exceptions import ClientDisconnected

    from web.errors import error_response

    inner = app.wsgi_app

    def wsgi_app(environ, start_response):
        sock = environ.get("gunicorn.socket") or environ.get("werkzeug.socket")
        if sock is not None:
            sock.settimeout(seconds)
        return inner(environ, start_response)

    def too_slow(_exc: Exception):
        response = error_response(408, "request_timeout", (
            f"the request stalled: nothing arrived for {seconds:g} s while reading it; send it again"))
        response.headers["Connection"] = "close"
        return response

    def disconnected(exc: ClientDisconnected):
        # Werkzeug's input stream turns the socket timeout into ClientDisconnected (400).
        if isinstance(exc.__context__, TimeoutError):
            return too_slow(exc)
        return error_response(exc.code or 400, "bad_request", exc.description or "the request body ended early")

    app.wsgi_app = wsgi_app
    app.register_error_handler(TimeoutError, too_slow)
    app.register_error_handler(ClientDisconnected, disconnected)


def bearer_key_matches(settings: Settings, authorization: str | None) -> bool:
    """`Authorization: Bearer <key>` names the configured API key (none configured: never)."""
    key = settings.api_key.get_secret_value() if settings.api_key else ""
    scheme, _, token = (authorization or "").partition(" ")
    # Constant-time comparison: the time taken says nothing about how much of a guess matched.
    return bool(key) and scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.encode())


def require_api_key(settings: Settings, authorization: str | None) -> None:
    """Catalog writes need `Authorization: Bearer <api_key>`; without a key they are off."""
    if settings.api_key is None or not settings.api_key.get_secret_value():
        raise ApiError(503, "writes_disabled", (
            "catalog writes are disabled because no API key is configured; "
            "set LENS_API_KEY (or api_key in lens.toml) on the server"))
    if not bearer_key_matches(settings, authorization):
        raise ApiError(401, "unauthorized", "catalog writes need 'Authorization: Bearer <api key>'",
                       headers={"WWW-Authenticate": 'Bearer realm="lens"'})

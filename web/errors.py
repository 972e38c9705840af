"""Every error leaves the API as JSON `{"error": {"code", "message"}}`, never an HTML page."""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from lens.config import ConfigError
from lens.errors import LensError

log = logging.getLogger(__name__)


class ApiError(LensError):
    """An error with an explicit HTTP status and code, raised by the API layer."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.http_status = status
        self.code = code
        self.headers = headers or {}


def bad_request(message: str, code: str = "bad_request") -> ApiError:
    return ApiError(400, code, message)


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None):
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


_HTTP_MESSAGES = {
    404: "no such endpoint; the API lives under /api/v1 (see /api/v1/openapi.json)",
    413: "the upload is larger than the server accepts",
}


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(LensError)
    def lens_error(exc: LensError):
        status = exc.http_status
        if status >= 500 and status not in (503, 504):
            log.error("lens error answered with %s: %s", status, exc.message)
        return error_response(status, exc.code, exc.message, getattr(exc, "headers", None))

    @app.errorhandler(ConfigError)
    def config_error(exc: ConfigError):
        return error_response(503, "misconfigured", str(exc))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        code = (exc.name or "error").lower().replace(" ", "_")
        message = _HTTP_MESSAGES.get(exc.code or 0) or exc.description or exc.name
        headers = {}
        if exc.code == 405 and exc.valid_methods:
            headers["Allow"] = ", ".join(exc.valid_methods)
        return error_response(exc.code or 500, code, message, headers)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        # A bug: log the traceback here, show the client a sentence, never the trace.
        log.exception("unhandled error")
        return error_response(500, "internal", f"internal error ({type(exc).__name__}); see the server log")

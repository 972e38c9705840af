"""The Flask app factory. `create_app()` is what gunicorn runs (`web.app:create_app()`)."""

from __future__ import annotations

from pathlib import Path

from celery import Celery
from flask import Flask

from lens.config import Settings, get_settings
from web.api import api
from web.errors import register_error_handlers
from web.gateway import Gateway
from web.observability import init_observability
from web.progress import init_progress
from web.ratelimit import init_rate_limit
from web.retention import init_upload_retention
from web.security import init_request_timeouts, init_security

STATIC_DIR = Path(__file__).resolve().parent / "static"


def create_app(settings: Settings | None = None, celery: Celery | None = None) -> Flask:
    """The gateway; with settings.server.embedded it also runs every task in-process."""
    from workers.app import make_celery

    settings = settings or get_settings()
    app = Flask(__name__, static_folder=str(STATIC_DIR), static_url_path="/static")
    # Base64 JSON is 4/3 of the photo; the photo's own limit is checked after decoding.
    app.config["MAX_CONTENT_LENGTH"] = settings.limits.max_upload_bytes * 4 // 3 + 64 * 1024
    app.json.sort_keys = False
    app.extensions["lens_gateway"] = Gateway(settings, celery or make_celery(settings))
    app.register_blueprint(api)
    init_progress(app, settings)
    register_error_handlers(app)
    # Hardening (issue 8): request logs + /metrics, rate limit, upload retention, headers.
    init_observability(app, settings)
    init_rate_limit(app, settings)
    init_upload_retention(app, settings)
    init_security(app)
    init_request_timeouts(app, settings.server.request_timeout_s)

    @app.get("/")
    def index():
        return app.send_static_file("index.html")

    return app

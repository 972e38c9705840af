"""`lens serve`: the embedded single process (`--embedded`, what `make run` runs) or the
gateway alone in front of Celery workers (what `make up` runs under gunicorn).

Imported by `lens --help`, so nothing heavy at module level."""

from __future__ import annotations

import argparse


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("serve", help="run the web server (API and browser UI)")
    p.add_argument("--embedded", action="store_true",
                   help="one process: run every task in-process (Celery eager), no Redis needed")
    p.add_argument("--host", help="address to listen on (default: server.host, 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default: server.port, 8080)")
    p.set_defaults(func=cmd_serve)


def embedded_settings(settings):
    return settings.model_copy(update={"server": settings.server.model_copy(update={"embedded": True})})


def cmd_serve(args: argparse.Namespace) -> int:
    from lens.config import get_settings

    settings = get_settings()
    if args.embedded:
        settings = embedded_settings(settings)
        from lens.threads import apply_settings_policy

        # Before any model loads: parallelism comes from the compute pool, not intra-op threads.
        apply_settings_policy(settings)
    host = args.host or settings.server.host
    port = args.port or settings.server.port
    from web.app import create_app

    app = create_app(settings)
    timeout = settings.server.request_timeout_s
    mode = "embedded: one process, no broker" if settings.server.embedded else f"gateway; workers via {settings.redis_url}"
    print(f"lens serving at http://{host}:{port}/  ({mode})", flush=True)
    if settings.server.embedded:
        app.extensions["lens_gateway"].runtime.warm_up_in_background()
        # Werkzeug's threaded server: enough for one household; models are shared in-process.
        app.run(host=host, port=port, threaded=True, use_reloader=False,
                request_handler=request_handler_with_timeout(timeout))
        return 0
    run_gunicorn(app, host, port, settings.server.gateway_workers, settings.server.gateway_threads)
    return 0



def request_handler_with_timeout(seconds: float):
    """Werkzeug's handler with a socket timeout from the first byte: slow headers are cut off
    too (socketserver applies `timeout` to the connection before anything is read)."""
    from werkzeug.serving import WSGIRequestHandler

    return type("TimeoutRequestHandler", (WSGIRequestHandler,), {"timeout": seconds})


def run_gunicorn(app, host: str, port: int, workers: int, threads: int) -> None:
    from gunicorn.app.base import BaseApplication

    class Gateway(BaseApplication):
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("threads", threads)
            self.cfg.set("worker_class", "gthread")

        def load(self):
            return app

    Gateway().run()

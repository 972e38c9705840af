"""Container health checks (Docker HEALTHCHECK), standard library + the lens packages only.

    python docker/healthcheck.py gateway   # GET /healthz on the local gateway port
    python docker/healthcheck.py worker    # this container's Celery worker answers a ping

Exit 0 healthy, 1 not. The gateway check needs no Redis, so a Redis outage does not make the
orchestrator restart healthy gateways; the worker check goes through the broker, because a
worker that cannot reach it serves nobody.
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.request


def gateway_healthy() -> bool:
    port = int(os.environ.get("LENS_SERVER__PORT", "8080"))
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=4) as resp:
            return resp.status == 200
    except OSError:
        return False


def worker_healthy() -> bool:
    from workers.worker import app

    name = f"celery@{socket.gethostname()}"
    try:
        replies = app.control.ping(destination=[name], timeout=5.0)
    except Exception:  # broker unreachable: the worker is not serving
        return False
    return any(name in reply for reply in replies)


CHECKS = {"gateway": gateway_healthy, "worker": worker_healthy}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in CHECKS:
        print(f"usage: healthcheck.py {{{'|'.join(CHECKS)}}}", file=sys.stderr)
        sys.exit(2)
    sys.exit(0 if CHECKS[sys.argv[1]]() else 1)

"""Uploads on disk: delete them after the retention time, and say so clearly when the disk is full.

Uploads are named by content hash only (workers.jobs.save_upload); re-uploading a photo touches
its file, so the age is "time since last use". Every gateway process sweeps the folder at most
once per `upload_sweep_interval_s`, in a background thread started by a request, so there is no
extra daemon to run; sweeps from several processes or machines are harmless (a file already gone
is skipped).
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from pathlib import Path

from flask import Flask

from lens.config import Settings
from web.errors import error_response

log = logging.getLogger(__name__)

# Half-written uploads (".upload-*" temp files) left by a process killed mid-write.
STALE_TEMP_AGE_S = 3600
DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def sweep_uploads(upload_dir: Path, retention_s: int, now: float | None = None) -> int:
    """Delete uploads unused for longer than retention_s (0 keeps them forever); returns count."""
    if retention_s <= 0 or not upload_dir.is_dir():
        return 0
    now = time.time() if now is None else now
    removed = 0
    for path in upload_dir.iterdir():
        limit = STALE_TEMP_AGE_S if path.name.startswith(".upload-") else retention_s
        try:
            if path.is_file() and not path.is_symlink() and now - path.stat().st_mtime > limit:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            continue  # another process swept it first
        except OSError as exc:
            log.warning("upload sweep: cannot remove %s: %s", path.name, exc)
    return removed


class UploadSweeper:
    def __init__(self, settings: Settings) -> None:
        self.upload_dir = settings.upload_dir
        self.retention_s = settings.server.upload_retention_s
        self.interval_s = settings.server.upload_sweep_interval_s
        self._next = 0.0
        self._lock = threading.Lock()

    def maybe_sweep(self) -> None:
        """Start a sweep in the background when one is due; never delays the request."""
        now = time.monotonic()
        if self.retention_s <= 0 or now < self._next:
            return
        with self._lock:
            if now < self._next:
                return
            self._next = now + self.interval_s
        threading.Thread(target=self._sweep, name="lens-upload-sweep", daemon=True).start()

    def _sweep(self) -> None:
        try:
            removed = sweep_uploads(self.upload_dir, self.retention_s)
        except OSError as exc:
            log.warning("upload sweep failed: %s", exc)
            return
        if removed:
            log.info("upload sweep: removed %d upload(s) older than %d s", removed, self.retention_s)


def _os_error(exc: OSError):
    if exc.errno in DISK_FULL_ERRNOS:
        log.error("disk full while storing data: %s", exc)
        return error_response(507, "storage_full", (
            "the server has no disk space left to store the photo; nothing was stored, "
            "try again later"))
    log.exception("unexpected OS error")
    return error_response(500, "internal", f"internal error (OSError {exc.errno}); see the server log")


def init_upload_retention(app: Flask, settings: Settings) -> UploadSweeper:
    """Register the sweeper and the disk-full answer; call once from the app factory."""
    sweeper = UploadSweeper(settings)
    app.extensions["lens_upload_sweeper"] = sweeper
    app.before_request(sweeper.maybe_sweep)
    app.register_error_handler(OSError, _os_error)
    return sweeper

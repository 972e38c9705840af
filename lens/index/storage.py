"""Crash-safe file writes: write a temporary file beside the target, fsync it, rename it over
the target, fsync the folder. A process killed at any point leaves either the old file or the
new one, never a torn one (rename is atomic on POSIX filesystems)."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

CHUNK = 4 << 20


def _write_chunks(fh, data: memoryview) -> None:
    for start in range(0, len(data), CHUNK):
        fh.write(data[start : start + CHUNK])


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes | memoryview) -> None:
    """Replace `path` with `data` atomically and durably."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            _write_chunks(fh, memoryview(data).cast("B"))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def atomic_write_json(path: Path, value: Any) -> None:
    atomic_write_bytes(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())


def remove_stale_temporaries(folder: Path) -> None:
    """Delete temp files left by writers that were killed mid-write (their pid is gone)."""
    for tmp in folder.glob(".*.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _pid_alive(int(pid)):
            with contextlib.suppress(OSError):
                tmp.unlink()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

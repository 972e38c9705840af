"""Crash-safe file writes, the one place they are written: a temporary file beside the target,
renamed over it (atomic on POSIX filesystems), so a process killed at any point leaves either
the old file or the new one, never a torn one. Durable writes also fsync the file and folder."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
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


@contextlib.contextmanager
def atomic_output(dest: Path, suffix: str = ".part", prefix: str | None = None) -> Iterator[Path]:
    """A temporary path beside `dest` for a writer that takes a path (an ONNX export, torch.save,
    an image encoder); renamed over `dest` when the block ends without error, removed otherwise.
    Readable by all (mkstemp makes 0600; workers may run as another user). Not fsynced: for
    files that can be made again (prepared models, thumbnails); durable data uses
    atomic_write_bytes. `prefix` names the temporary file (default ".<name>."), for a sweeper
    that tells half-written files by it."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=dest.parent, prefix=prefix or f".{dest.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


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

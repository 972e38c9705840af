"""Where an uploaded photo waits for the workers (config `fleet.upload_store`).

A job, a crop search and a catalog add name the photo by a reference string, never by its
bytes in a message:
  disk   `<data_dir>/uploads/<sha256>.<ext>`, the reference is that absolute path: every worker
         must see the gateway's folder (one machine, or a shared disk). The default.
  redis  the bytes under `lens:upload:<sha256>.<ext>` in the Redis at `redis_url`, for
         `fleet.upload_ttl_s`, at most `fleet.upload_max_bytes`; the reference is
         `redis:<sha256>.<ext>`. Workers on other machines need only Redis, which they use
         for the queue anyway.
A worker reads a reference of either kind whatever its own setting: the reference says which.
A photo gone from the store (expired, swept, or never there) is UploadExpiredError (410).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Protocol

import redis

from lens.config import Settings
from lens.errors import LensError
from lens.files import atomic_output
from lens.image import DecodedImage, decode_image, load_image_file
from workers.store import PREFIX, QueueUnavailableError, redacted

REDIS_REFERENCE = "redis:"
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tif"}


class UploadExpiredError(LensError):
    """The photo a job or search names is no longer stored."""

    http_status = 410
    code = "upload_expired"


class UploadTooLargeError(LensError):
    http_status = 413
    code = "upload_too_large"


class UploadStore(Protocol):
    def put(self, data: bytes, image_id: str, image_format: str) -> str:
        """Keep the photo; returns the reference tasks are given."""
        ...


def upload_name(image_id: str, image_format: str) -> str:
    return f"{image_id}.{EXTENSIONS.get(image_format, 'bin')}"


def save_upload(upload_dir: Path, data: bytes, image_id: str, image_format: str) -> Path:
    """Store the upload under its content hash; the same photo twice is written once."""
    upload_dir.mkdir(parents=True, exist_ok=True)
    path = upload_dir / upload_name(image_id, image_format)
    if path.exists():
        os.utime(path)  # keeps it from retention clean-up while in use
        return path
    # Write then rename: a worker never sees a half-written photo.
    with atomic_output(path, prefix=".upload-") as tmp:  # the prefix web.retention sweeps
        tmp.write_bytes(data)
    return path


class DiskUploads:
    def __init__(self, upload_dir: Path) -> None:
        self.upload_dir = upload_dir

    def put(self, data: bytes, image_id: str, image_format: str) -> str:
        return str(save_upload(self.upload_dir, data, image_id, image_format))


@functools.lru_cache(maxsize=8)
def _bytes_client(url: str) -> redis.Redis:
    """A client that returns bytes (the store's own decodes to text), with the same short
    timeouts: an upload must fail fast with 503 when Redis is gone, not hang."""
    return redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=10.0)


def _redis_key(name: str) -> str:
    return f"{PREFIX}upload:{name}"


class RedisUploads:
    def __init__(self, url: str, ttl_s: int, max_bytes: int) -> None:
        self.url, self.ttl_s, self.max_bytes = url, ttl_s, max_bytes

    def put(self, data: bytes, image_id: str, image_format: str) -> str:
        if len(data) > self.max_bytes:
            raise UploadTooLargeError(
                f"the photo is {len(data)} bytes; this server hands photos to its workers through "
                f"Redis, which takes at most {self.max_bytes} bytes (fleet.upload_max_bytes)")
        name = upload_name(image_id, image_format)
        # SET with EX: the same photo again replaces the value and starts its time again.
        _redis_call(self.url, "set", _redis_key(name), data, ex=self.ttl_s)
        return REDIS_REFERENCE + name


def make_upload_store(settings: Settings) -> UploadStore:
    fleet = settings.fleet
    if fleet.upload_store == "redis":
        return RedisUploads(settings.redis_url, fleet.upload_ttl_s, fleet.upload_max_bytes)
    return DiskUploads(settings.upload_dir)


def _redis_call(url: str, method: str, *args, **kwargs):
    try:
        return getattr(_bytes_client(url), method)(*args, **kwargs)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise QueueUnavailableError(
            f"the photo store (Redis at {redacted(url)}) is unreachable: {exc}") from None


def _expired(reference: str) -> UploadExpiredError:
    return UploadExpiredError(
        f"the photo {Path(reference.removeprefix(REDIS_REFERENCE)).name} is no longer stored "
        "(it expired, or was removed); send it again")


def upload_exists(settings: Settings, reference: str) -> bool:
    if reference.startswith(REDIS_REFERENCE):
        name = reference.removeprefix(REDIS_REFERENCE)
        return bool(_redis_call(settings.redis_url, "exists", _redis_key(name)))
    return Path(reference).is_file()


def read_upload(settings: Settings, reference: str) -> bytes:
    """The photo's bytes; UploadExpiredError when it is gone."""
    if reference.startswith(REDIS_REFERENCE):
        data = _redis_call(settings.redis_url, "get", _redis_key(reference.removeprefix(REDIS_REFERENCE)))
        if data is None:
            raise _expired(reference)
        return data
    try:
        return Path(reference).read_bytes()
    except FileNotFoundError:
        raise _expired(reference) from None


def upload_source(settings: Settings, reference: str) -> Path | bytes:
    """What a catalog add takes: the file itself when on this disk (the SQLite catalog records
    its path, as `lens index add` does), the bytes when they came through Redis."""
    if reference.startswith(REDIS_REFERENCE):
        return read_upload(settings, reference)
    path = Path(reference)
    if not path.is_file():
        raise _expired(reference)
    return path


def load_upload_image(settings: Settings, reference: str) -> DecodedImage:
    """The decoded photo, with the same limits the gateway checked it against."""
    limits = settings.limits
    bounds = {"max_bytes": limits.max_upload_bytes, "max_pixels": limits.max_pixels,
              "max_side": limits.max_side, "max_aspect_ratio": limits.max_aspect_ratio}
    if reference.startswith(REDIS_REFERENCE):
        return decode_image(read_upload(settings, reference), **bounds)
    if not Path(reference).is_file():
        raise _expired(reference)
    return load_image_file(reference, **bounds)

"""Where an uploaded photo waits for the workers (config `fleet.upload_store`).

A job, a crop search and a catalog add name the photo by a reference string, never by its
bytes in a message:
  disk   `<data_dir>/uploads/<sha256>.<ext>`, the reference is that absolute path: every worker
         must see the gateway's folder (one machine, or a shared disk). The default.
  redis  the bytes under `lens:upload:<sha256>.<ext>` in the Redis at `redis_url`, for
         `fleet.upload_ttl_s`, at most `fleet.upload_max_bytes`; the reference is
         `redis:<sha256>.<ext>`. Workers on other machines need only Redis, which they use
         for the queue anyway.
  s3     the bytes under `<fleet.s3.prefix><sha256>.<ext>` in an S3-compatible bucket (AWS,
         MinIO, Ceph), at most `fleet.upload_max_bytes`; the reference is a presigned GET URL
         (SigV4) valid for `fleet.upload_ttl_s`: `http(s)://<endpoint>/<bucket>/<key>?X-Amz-...`.
A worker reads a reference of any kind whatever its own setting: the reference says which.
A photo gone from the store (expired, swept, or never there) is UploadExpiredError (410).

Why a presigned URL rather than `s3:<bucket>/<key>` read with the worker's own credentials:
only the gateway (which writes) holds S3 credentials; a worker reads with one plain HTTP GET
(stdlib urllib, no S3 client, no secret on every worker machine), the URL's expiry is the
photo's time to live (S3 has no per-object TTL; a bucket lifecycle rule deletes the objects
later, in whole days), and the bucket can stay private. The URL is a bearer capability for that
one object until it expires: it travels in Celery messages and job records in Redis, which are
already trusted, and is never shown to clients or written in a message (`_url_name`). The
expiry is checked from the URL itself too (X-Amz-Date + X-Amz-Expires), so a server that does
not enforce it (some test servers) still gives 410 once the time is up.
"""

from __future__ import annotations

import functools
import os
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import redis
from PIL import Image

from lens.config import ConfigError, Settings
from lens.errors import LensError
from lens.files import atomic_output
from lens.image import DecodedImage, decode_image, load_image_file
from workers.store import PREFIX, QueueUnavailableError, redacted

REDIS_REFERENCE = "redis:"
# A presigned GET URL (upload_store = "s3"): any worker reads it with one HTTP request.
URL_REFERENCES = ("http://", "https://")
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tif"}


class UploadExpiredError(LensError):
    """The photo a job or search names is no longer stored."""

    http_status = 410
    code = "upload_expired"


class UploadTooLargeError(LensError):
    http_status = 413
    code = "upload_too_large"


class UploadStoreUnavailableError(LensError):
    """The S3-compatible photo store cannot be reached, or refused the request."""

    http_status = 503
    code = "upload_store_unavailable"
    retryable = True  # a catalog write meeting it is rolled back and tried again


class UploadStore(Protocol):
    def put(self, data: bytes, image_id: str, image_format: str) -> str:
        """Keep the photo; returns the reference tasks are given."""
        ...


def upload_name(image_id: str, image_format: str) -> str:
    return f"{image_id}.{EXTENSIONS.get(image_format, 'bin')}"


def refuse_too_large(data: bytes, max_bytes: int, store: str) -> None:
    """UploadTooLargeError (413) for a photo over what the store takes (fleet.upload_max_bytes)."""
    if len(data) > max_bytes:
        raise UploadTooLargeError(
            f"the photo is {len(data)} bytes; this server hands photos to its workers through "
            f"{store}, which takes at most {max_bytes} bytes (fleet.upload_max_bytes)")


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
        refuse_too_large(data, self.max_bytes, "Redis")
        name = upload_name(image_id, image_format)
        # SET with EX: the same photo again replaces the value and starts its time again.
        _redis_call(self.url, "set", _redis_key(name), data, ex=self.ttl_s)
        return REDIS_REFERENCE + name


@functools.lru_cache(maxsize=8)
def _s3_client(endpoint_url: str | None, region: str, access_key_id: str | None, secret: str | None,
               addressing_style: str, connect_timeout_s: float, read_timeout_s: float) -> Any:
    """One boto3 client per configuration (they are thread-safe, and slow to make), with short
    timeouts and one retry: a put to a store that is down fails in seconds, with 503."""
    try:
        import boto3  # only the gateway of an s3 fleet uses it
        from botocore.config import Config
    except ImportError:
        raise ConfigError('fleet.upload_store = "s3" needs boto3 (requirements.txt): pip install boto3') from None

    config = Config(signature_version="s3v4", connect_timeout=connect_timeout_s, read_timeout=read_timeout_s,
                    retries={"total_max_attempts": 2, "mode": "standard"}, s3={"addressing_style": addressing_style})
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint_url or None, region_name=region, config=config,
        aws_access_key_id=access_key_id or None, aws_secret_access_key=secret or None)


class S3Uploads:
    def __init__(self, settings: Settings) -> None:
        fleet = settings.fleet
        self.s3, self.ttl_s, self.max_bytes = fleet.s3, fleet.upload_ttl_s, fleet.upload_max_bytes
        secret = fleet.s3.secret_access_key.get_secret_value() if fleet.s3.secret_access_key else None
        self.client = _s3_client(fleet.s3.endpoint_url, fleet.s3.region, fleet.s3.access_key_id, secret,
                                 fleet.s3.addressing_style, fleet.s3.connect_timeout_s, fleet.s3.read_timeout_s)

    @property
    def where(self) -> str:
        return f"S3 bucket '{self.s3.bucket}' at {self.s3.endpoint_url or 'AWS'}"

    def put(self, data: bytes, image_id: str, image_format: str) -> str:
        refuse_too_large(data, self.max_bytes, "an S3 bucket")
        name = upload_name(image_id, image_format)
        key = f"{self.s3.prefix}{name}"
        # The same photo again replaces the object (its lifecycle age starts again) and gets a
        # new URL, valid for upload_ttl_s from now.
        self._call("put_object", Bucket=self.s3.bucket, Key=key, Body=data,
                   ContentType=Image.MIME.get(image_format, "application/octet-stream"))
        return self._call("generate_presigned_url", "get_object",
                          Params={"Bucket": self.s3.bucket, "Key": key}, ExpiresIn=self.ttl_s)

    def check(self) -> str:
        """For /readyz: the bucket answers (HEAD bucket)."""
        self._call("head_bucket", Bucket=self.s3.bucket)
        return self.where

    def _call(self, method: str, *args, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        try:
            return getattr(self.client, method)(*args, **kwargs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = error.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            hint = {"NoSuchBucket": "; create it, or set fleet.s3.bucket",
                    "404": "; create it, or set fleet.s3.bucket",
                    "InvalidAccessKeyId": "; check the S3 credentials",
                    "SignatureDoesNotMatch": "; check the S3 credentials",
                    "AccessDenied": "; check the S3 credentials and the bucket's policy",
                    "403": "; check the S3 credentials and the bucket's policy"}.get(str(code), "")
            raise UploadStoreUnavailableError(
                f"the photo store ({self.where}) refused {method}: {code} {error.get('Message', '')}".rstrip()
                + hint) from None
        except NoCredentialsError:
            raise UploadStoreUnavailableError(
                f"the photo store ({self.where}) cannot be written: no S3 credentials found; set "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or fleet.s3.access_key_id and "
                "fleet.s3.secret_access_key) for the gateway") from None
        except BotoCoreError as exc:  # unreachable, timed out
            raise UploadStoreUnavailableError(
                f"the photo store ({self.where}) is unreachable, so the photo cannot be taken now; "
                f"try again shortly ({type(exc).__name__}: {exc})") from None


def make_upload_store(settings: Settings) -> UploadStore:
    fleet = settings.fleet
    if fleet.upload_store == "redis":
        return RedisUploads(settings.redis_url, fleet.upload_ttl_s, fleet.upload_max_bytes)
    if fleet.upload_store == "s3":
        return S3Uploads(settings)
    return DiskUploads(settings.upload_dir)


def _redis_call(url: str, method: str, *args, **kwargs):
    try:
        return getattr(_bytes_client(url), method)(*args, **kwargs)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise QueueUnavailableError(
            f"the photo store (Redis at {redacted(url)}) is unreachable: {exc}") from None


def _is_url(reference: str) -> bool:
    return reference.startswith(URL_REFERENCES)


def _url_name(reference: str) -> str:
    """The photo's file name in a URL (its key's last part): for messages, without the signature."""
    return unquote(urlsplit(reference).path).rsplit("/", 1)[-1]


def _url_host(reference: str) -> str:
    parts = urlsplit(reference)
    return f"{parts.scheme}://{parts.netloc}"


def _expired(reference: str) -> UploadExpiredError:
    name = _url_name(reference) if _is_url(reference) else Path(reference.removeprefix(REDIS_REFERENCE)).name
    return UploadExpiredError(f"the photo {name} is no longer stored (it expired, or was removed); send it again")


def _url_expired(reference: str, now: datetime | None = None) -> bool:
    """A SigV4 presigned URL past X-Amz-Date + X-Amz-Expires (SigV2's `Expires` too)."""
    query = {k.lower(): v[0] for k, v in parse_qs(urlsplit(reference).query).items()}
    now = now or datetime.now(UTC)
    try:
        if "x-amz-date" in query and "x-amz-expires" in query:
            signed = datetime.strptime(query["x-amz-date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            return now >= signed + timedelta(seconds=int(query["x-amz-expires"]))
        if "expires" in query:
            return now.timestamp() >= int(query["expires"])
    except ValueError:
        return False  # not ours to judge: the server will
    return False


def _url_timeouts(settings: Settings) -> float:
    return settings.fleet.s3.connect_timeout_s + settings.fleet.s3.read_timeout_s


def _url_get(settings: Settings, reference: str, probe: bool = False) -> bytes | None:
    """GET a presigned URL: the bytes (probe: the first byte only); None when the store says
    the object is gone or the URL expired; UploadStoreUnavailableError when it cannot say."""
    if _url_expired(reference):
        return None
    request = urllib.request.Request(reference, headers={"Range": "bytes=0-0"} if probe else {})
    limit = max(settings.limits.max_upload_bytes, settings.fleet.upload_max_bytes)
    # One socket timeout bounds the connect and every read: a silent server costs seconds, not a hang.
    timeout = _url_timeouts(settings)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # http(s) only: _is_url
            data = response.read(1 if probe else limit + 1)
    except urllib.error.HTTPError as exc:
        body = exc.read(4096).decode("utf-8", "replace")
        exc.close()
        # 404 NoSuchKey: deleted (a lifecycle rule, by hand); 403 "Request has expired": past
        # its time (AWS, MinIO and Ceph say so in the body). Any other refusal is a fault.
        if exc.code == 404 or (exc.code in (400, 403) and "expired" in body.lower()):
            return None
        code = body.split("<Code>", 1)[1].split("</Code>", 1)[0] if "<Code>" in body else ""
        raise UploadStoreUnavailableError(
            f"the photo store ({_url_host(reference)}) answered {exc.code} {code or exc.reason} "
            f"for the photo {_url_name(reference)}") from None
    except (urllib.error.URLError, OSError) as exc:  # refused, unresolvable, timed out, reset
        reason = getattr(exc, "reason", exc)
        raise UploadStoreUnavailableError(
            f"the photo store ({_url_host(reference)}) is unreachable, so the photo "
            f"{_url_name(reference)} cannot be read now; try again shortly ({reason})") from None
    if len(data) > limit:
        raise UploadTooLargeError(f"the photo {_url_name(reference)} is over {limit} bytes")
    return data


def upload_exists(settings: Settings, reference: str) -> bool:
    if reference.startswith(REDIS_REFERENCE):
        name = reference.removeprefix(REDIS_REFERENCE)
        return bool(_redis_call(settings.redis_url, "exists", _redis_key(name)))
    if _is_url(reference):
        return _url_get(settings, reference, probe=True) is not None
    return Path(reference).is_file()


def read_upload(settings: Settings, reference: str) -> bytes:
    """The photo's bytes; UploadExpiredError when it is gone."""
    if reference.startswith(REDIS_REFERENCE):
        data = _redis_call(settings.redis_url, "get", _redis_key(reference.removeprefix(REDIS_REFERENCE)))
        if data is None:
            raise _expired(reference)
        return data
    if _is_url(reference):
        data = _url_get(settings, reference)
        if data is None:
            raise _expired(reference)
        return data
    try:
        return Path(reference).read_bytes()
    except FileNotFoundError:
        raise _expired(reference) from None


def upload_source(settings: Settings, reference: str) -> Path | bytes:
    """What a catalog add takes: the file itself when on this disk (the SQLite catalog records
    its path, as `lens index add` does), the bytes when they came through Redis or S3."""
    if reference.startswith(REDIS_REFERENCE) or _is_url(reference):
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
    if reference.startswith(REDIS_REFERENCE) or _is_url(reference):
        return decode_image(read_upload(settings, reference), **bounds)
    if not Path(reference).is_file():
        raise _expired(reference)
    return load_image_file(reference, **bounds)

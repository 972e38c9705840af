"""fleet.upload_store = "s3" (workers/uploads.py) against a real S3-API server over HTTP: moto's
server (moto[server], requirements-dev.txt) on a free loopback port, reached by boto3 in the
gateway and by plain HTTP GETs of presigned URLs in the workers; no boto3 call is mocked.
What a photo gone from the bucket (or past its URL's time) does: 410; a store that is down or
silent: 503 in seconds, never a hang, never a 500; over fleet.upload_max_bytes: 413."""

from __future__ import annotations

import http.server
import io
import logging
import socket
import threading
import time
import uuid
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

from lens.config import ConfigError, load_settings
from lens.image import content_hash, decode_image
from workers.jobs import JobRecord, Jobs, new_job_id
from workers.store import MemoryStore
from workers.uploads import (
    S3Uploads,
    UploadExpiredError,
    UploadStoreUnavailableError,
    UploadTooLargeError,
    _s3_client,
    load_upload_image,
    make_upload_store,
    read_upload,
    upload_exists,
    upload_source,
)

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

BUCKET = "lens-test-photos"
KEYS = {"access_key_id": "lens-test-key", "secret_access_key": "lens-test-secret"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    """moto's S3 server on its own port, with the bucket made (as an operator would)."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    admin(endpoint).create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()


def admin(endpoint: str):
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id=KEYS["access_key_id"], aws_secret_access_key=KEYS["secret_access_key"])


def s3_settings(tmp_path, endpoint: str, *, fleet: dict | None = None, **s3):
    return load_settings(data_dir=tmp_path, fleet={
        "upload_store": "s3", "upload_ttl_s": 60, **(fleet or {}),
        "s3": {"endpoint_url": endpoint, "bucket": BUCKET, "prefix": "test/", **KEYS, **s3}})


def random_png(side: int = 48) -> bytes:
    """A photo no other test stores (its content hash names its key)."""
    pixels = np.random.default_rng(uuid.uuid4().int % 2**32).integers(0, 256, (side, side, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


def put(settings, data: bytes) -> str:
    return make_upload_store(settings).put(data, content_hash(data), "PNG")


def test_the_photo_goes_to_the_bucket_and_the_reference_is_a_presigned_url(tmp_path, s3_endpoint):
    settings = s3_settings(tmp_path, s3_endpoint)
    store = make_upload_store(settings)
    assert isinstance(store, S3Uploads)
    data = random_png()
    started = time.perf_counter()
    reference = store.put(data, content_hash(data), "PNG")
    put_ms = (time.perf_counter() - started) * 1000
    parts = urlsplit(reference)
    assert f"{parts.scheme}://{parts.netloc}" == s3_endpoint
    assert parts.path == f"/{BUCKET}/test/{content_hash(data)}.png"  # path-style on a custom endpoint
    assert "X-Amz-Signature=" in parts.query and "X-Amz-Expires=60" in parts.query  # SigV4, upload_ttl_s
    stored = admin(s3_endpoint).get_object(Bucket=BUCKET, Key=f"test/{content_hash(data)}.png")
    assert stored["Body"].read() == data and stored["ContentType"] == "image/png"

    started = time.perf_counter()
    assert read_upload(settings, reference) == data
    read_ms = (time.perf_counter() - started) * 1000
    assert upload_exists(settings, reference)
    assert upload_source(settings, reference) == data  # bytes for the catalog, no path
    image = load_upload_image(settings, reference)
    assert (image.width, image.height, image.sha256) == (48, 48, content_hash(data))
    assert not (tmp_path / "uploads").exists()
    # The same photo twice is fine: the object is replaced and a fresh URL handed out.
    again = store.put(data, content_hash(data), "PNG")
    assert read_upload(settings, again) == data
    print(f"s3 put {put_ms:.1f} ms, read {read_ms:.1f} ms (moto, 48 px PNG, {len(data)} bytes)")


def test_a_worker_with_its_own_data_dir_and_no_credentials_reads_it(tmp_path, s3_endpoint, monkeypatch):
    data = random_png()
    reference = put(s3_settings(tmp_path / "gateway", s3_endpoint), data)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    # Workers configured for disk, or for Redis: the reference says where the photo is.
    for worker in (load_settings(data_dir=tmp_path / "w1"),
                   load_settings(data_dir=tmp_path / "w2", fleet={"upload_store": "redis"})):
        assert read_upload(worker, reference) == data
        assert load_upload_image(worker, reference).sha256 == content_hash(data)
    assert not any(path.exists() for path in (tmp_path / "w1", tmp_path / "w2"))


@pytest.fixture
def fresh_clients():
    """Clients are cached per configuration with the credentials found when made."""
    _s3_client.cache_clear()
    yield
    _s3_client.cache_clear()


def test_credentials_come_from_the_aws_environment_when_not_configured(tmp_path, s3_endpoint, monkeypatch,
                                                                       fresh_clients):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-env")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "from-env-secret")
    settings = load_settings(data_dir=tmp_path, fleet={
        "upload_store": "s3", "s3": {"endpoint_url": s3_endpoint, "bucket": BUCKET}})
    data = random_png()
    reference = put(settings, data)
    assert "from-env%2F" in reference  # the access key id in X-Amz-Credential (never the secret)
    assert "from-env-secret" not in reference
    assert read_upload(settings, reference) == data


def test_a_gateway_without_credentials_is_503_that_says_which(tmp_path, s3_endpoint, monkeypatch, fresh_clients):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-role lookup off this machine
    settings = load_settings(data_dir=tmp_path, fleet={
        "upload_store": "s3", "s3": {"endpoint_url": s3_endpoint, "bucket": BUCKET}})
    with pytest.raises(UploadStoreUnavailableError, match="no S3 credentials found; set AWS_ACCESS_KEY_ID") as raised:
        put(settings, random_png())
    assert raised.value.http_status == 503


def expect_gone(settings, reference: str) -> None:
    assert not upload_exists(settings, reference)
    for read in (read_upload, load_upload_image, upload_source):
        with pytest.raises(UploadExpiredError, match="no longer stored") as raised:
            read(settings, reference)
        assert raised.value.http_status == 410
        assert "X-Amz" not in raised.value.message  # the signature stays out of messages


def test_a_deleted_object_is_upload_expired_410(tmp_path, s3_endpoint):
    settings = s3_settings(tmp_path, s3_endpoint)
    data = random_png()
    reference = put(settings, data)
    admin(s3_endpoint).delete_object(Bucket=BUCKET, Key=f"test/{content_hash(data)}.png")  # as a lifecycle rule would
    expect_gone(settings, reference)


def test_an_expired_url_is_upload_expired_410(tmp_path, s3_endpoint):
    """The object is still there; its URL's time (upload_ttl_s) is up."""
    settings = s3_settings(tmp_path, s3_endpoint)
    data = random_png()
    put(settings, data)
    client = S3Uploads(settings).client
    reference = client.generate_presigned_url(
        "get_object", Params={"Bucket": BUCKET, "Key": f"test/{content_hash(data)}.png"}, ExpiresIn=1)
    assert read_upload(settings, reference) == data
    time.sleep(1.1)
    expect_gone(settings, reference)


class _Answer(http.server.BaseHTTPRequestHandler):
    """An S3 server's refusals, in its own words (AWS, MinIO and Ceph send these bodies)."""

    bodies = {
        "/expired": (403, "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"),
        "/badsig": (403, "<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we "
                         "calculated does not match</Message></Error>"),
        "/broken": (500, "<Error><Code>InternalError</Code><Message>We encountered an internal "
                         "error</Message></Error>"),
    }

    def do_GET(self):  # noqa: N802 (http.server's name)
        status, body = self.bodies[urlsplit(self.path).path.rsplit("/", 1)[0]]
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass


@pytest.fixture
def answering_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_servers_own_expired_answer_is_410_and_other_refusals_503(tmp_path, answering_server):
    settings = load_settings(data_dir=tmp_path)
    expect_gone(settings, f"{answering_server}/expired/abc.jpg?X-Amz-Signature=s")
    for path, code in (("badsig", "SignatureDoesNotMatch"), ("broken", "InternalError")):
        with pytest.raises(UploadStoreUnavailableError, match=code) as raised:
            read_upload(settings, f"{answering_server}/{path}/abc.jpg?X-Amz-Signature=s")
        assert raised.value.http_status == 503 and "X-Amz" not in raised.value.message


def test_a_photo_over_the_limit_is_413_and_nothing_is_stored(tmp_path, s3_endpoint):
    data = random_png(64)
    store = make_upload_store(s3_settings(tmp_path, s3_endpoint, fleet={"upload_max_bytes": len(data) - 1}))
    with pytest.raises(UploadTooLargeError) as raised:
        store.put(data, content_hash(data), "PNG")
    assert raised.value.http_status == 413 and "fleet.upload_max_bytes" in raised.value.message
    listed = admin(s3_endpoint).list_objects_v2(Bucket=BUCKET, Prefix=f"test/{content_hash(data)}")
    assert listed["KeyCount"] == 0


@pytest.fixture
def silent_port():
    """A port that takes connections (the kernel's backlog) and never answers a byte."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


def test_a_store_that_is_down_or_silent_is_503_within_seconds(tmp_path, s3_endpoint, silent_port):
    data = random_png()
    reference = put(s3_settings(tmp_path, s3_endpoint), data)
    path_and_query = reference.split("/", 3)[3]
    timeouts = {"connect_timeout_s": 0.5, "read_timeout_s": 0.5}
    for endpoint in (f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{silent_port}"):  # refused; silent
        settings = s3_settings(tmp_path, endpoint, **timeouts)
        started = time.monotonic()
        with pytest.raises(UploadStoreUnavailableError, match="unreachable") as raised:
            put(settings, data)
        assert raised.value.http_status == 503
        # A worker's read of a URL on that host, and the crop search's check.
        for call in (read_upload, upload_exists, load_upload_image):
            with pytest.raises(UploadStoreUnavailableError, match="unreachable"):
                call(settings, f"{endpoint}/{path_and_query}")
        # 2 put attempts (0.5 s connect + botocore's 1 s wait for 100-continue + 0.5 s read) + 3 reads
        # (one 1 s socket timeout each): ~6 s when silent; the rest is room for a loaded machine.
        assert time.monotonic() - started < 15, endpoint


def test_a_missing_bucket_is_503_that_says_so(tmp_path, s3_endpoint):
    with pytest.raises(UploadStoreUnavailableError, match="NoSuchBucket.*create it") as raised:
        put(s3_settings(tmp_path, s3_endpoint, bucket="no-such-bucket"), random_png())
    assert raised.value.http_status == 503


def test_s3_settings_are_checked_at_startup(tmp_path, monkeypatch, lens_env):
    with pytest.raises(ConfigError, match=r"needs the bucket: set fleet\.s3\.bucket \(LENS_FLEET__S3__BUCKET\)"):
        load_settings(data_dir=tmp_path, fleet={"upload_store": "s3"})
    with pytest.raises(ConfigError, match="at most 604800 s"):
        load_settings(data_dir=tmp_path, fleet={"upload_store": "s3", "upload_ttl_s": 8 * 86400,
                                                "s3": {"bucket": "b"}})
    with pytest.raises(ConfigError, match="go together"):
        load_settings(data_dir=tmp_path, fleet={"upload_store": "s3", "s3": {"bucket": "b", "access_key_id": "k"}})
    with pytest.raises(ConfigError, match="unknown setting"):
        load_settings(data_dir=tmp_path, fleet={"upload_store": "s3", "s3": {"bucket": "b", "buckt": "c"}})
    # The environment names the same settings; the bucket alone is enough (AWS S3, env credentials).
    monkeypatch.setenv("LENS_FLEET__UPLOAD_STORE", "s3")
    monkeypatch.setenv("LENS_FLEET__S3__BUCKET", "photos")
    monkeypatch.setenv("LENS_FLEET__S3__ENDPOINT_URL", "http://minio:9000")
    settings = load_settings(data_dir=tmp_path)
    assert (settings.fleet.s3.bucket, settings.fleet.s3.endpoint_url) == ("photos", "http://minio:9000")
    # Not s3: the section is not required.
    monkeypatch.setenv("LENS_FLEET__UPLOAD_STORE", "redis")
    monkeypatch.delenv("LENS_FLEET__S3__BUCKET")
    assert load_settings(data_dir=tmp_path).fleet.s3.bucket is None


def test_submit_through_s3_writes_no_file(tmp_path, s3_endpoint):
    settings = s3_settings(tmp_path, s3_endpoint)
    jobs = Jobs(settings, MemoryStore())
    data = random_png()
    sent: list[JobRecord] = []
    jobs.submit(data, decode_image(data), {}, {"detect": "x"}, sent.append)
    assert urlsplit(sent[0].upload_ref).path == f"/{BUCKET}/test/{content_hash(data)}.png"
    assert read_upload(settings, sent[0].upload_ref) == data
    assert not (tmp_path / "uploads").exists()


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory):
    from workers.local import RedisServer

    server = RedisServer(free_port(), tmp_path_factory.mktemp("s3-redis")).start()
    yield server
    server.stop()


def test_through_the_api_an_expired_photo_is_410_and_a_store_down_is_503(tmp_path, s3_endpoint, private_redis,
                                                                         silent_port):
    from web.app import create_app

    settings = s3_settings(tmp_path, s3_endpoint)
    app = create_app(settings.model_copy(update={"redis_url": private_redis.url}))
    client = app.test_client()
    gateway = app.extensions["lens_gateway"]
    ready = client.get("/readyz").get_json()
    assert ready["checks"]["uploads"] == {"ok": True, "detail": f"S3 bucket '{BUCKET}' at {s3_endpoint}"}

    data = random_png()
    reference = put(settings, data)
    admin(s3_endpoint).delete_object(Bucket=BUCKET, Key=f"test/{content_hash(data)}.png")
    job_id = new_job_id()
    gateway.jobs.create(JobRecord(job_id=job_id, image_id=content_hash(data), upload_ref=reference,
                                  width=48, height=48, options={}, cache_key="k" + job_id), status="done")
    response = client.post("/api/v1/search", json={"job_id": job_id, "box": [0, 0, 24, 24]})
    assert response.status_code == 410, response.get_json()
    assert response.get_json()["error"]["code"] == "upload_expired"

    down = s3_settings(tmp_path, f"http://127.0.0.1:{silent_port}", connect_timeout_s=0.5, read_timeout_s=0.5)
    app = create_app(down.model_copy(update={"redis_url": private_redis.url}))
    client = app.test_client()
    started = time.monotonic()
    import base64

    response = client.post("/api/v1/analyze", json={"image": base64.b64encode(random_png()).decode()})
    assert response.status_code == 503, response.get_json()
    assert response.get_json()["error"]["code"] == "upload_store_unavailable"
    assert time.monotonic() - started < 10
    ready = client.get("/readyz")
    assert ready.status_code == 503 and not ready.get_json()["checks"]["uploads"]["ok"]

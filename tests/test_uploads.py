"""The upload store (workers/uploads.py): a photo on disk (the default) or in Redis with a TTL
and a size limit, on the machine's Redis (DB 14, keys of random photos only), and what a task
or a request does when the photo is gone: a failed job with a message, a 410, never a 500."""

from __future__ import annotations

import io
import uuid

import numpy as np
import pytest
import redis
from PIL import Image
from test_integration_fleet import machine_redis_or_skip

from lens.config import load_settings
from lens.image import content_hash, decode_image
from workers.jobs import JobRecord, Jobs, new_job_id
from workers.store import MemoryStore
from workers.uploads import (
    DiskUploads,
    RedisUploads,
    UploadExpiredError,
    UploadTooLargeError,
    load_upload_image,
    make_upload_store,
    read_upload,
    upload_exists,
    upload_source,
)

REDIS_URL = "redis://127.0.0.1:6379/14"


@pytest.fixture(scope="module")
def machine_redis() -> redis.Redis:
    return machine_redis_or_skip(REDIS_URL)


def random_png(side: int = 48) -> bytes:
    """A photo no other test stores (its content hash names its key)."""
    pixels = np.random.default_rng(uuid.uuid4().int % 2**32).integers(0, 256, (side, side, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


def redis_settings(tmp_path, **fleet):
    return load_settings(data_dir=tmp_path, redis_url=REDIS_URL,
                         fleet={"upload_store": "redis", "upload_ttl_s": 60, **fleet})


def test_disk_is_the_default_and_its_reference_is_the_file(tmp_path):
    settings = load_settings(data_dir=tmp_path)
    assert settings.fleet.upload_store == "disk"
    store = make_upload_store(settings)
    assert isinstance(store, DiskUploads)
    data = random_png()
    reference = store.put(data, content_hash(data), "PNG")
    assert reference == str(tmp_path / "uploads" / f"{content_hash(data)}.png")
    assert read_upload(settings, reference) == data
    assert upload_source(settings, reference) == tmp_path / "uploads" / f"{content_hash(data)}.png"


def test_redis_keeps_the_bytes_under_a_key_with_a_ttl_and_no_file(tmp_path, machine_redis):
    settings = redis_settings(tmp_path)
    store = make_upload_store(settings)
    assert isinstance(store, RedisUploads)
    data = random_png()
    reference = store.put(data, content_hash(data), "PNG")
    try:
        assert reference == f"redis:{content_hash(data)}.png"
        key = f"lens:upload:{content_hash(data)}.png"
        assert machine_redis.get(key) == data
        assert 0 < machine_redis.ttl(key) <= 60
        assert upload_exists(settings, reference)
        assert read_upload(settings, reference) == data
        assert upload_source(settings, reference) == data  # bytes for the catalog, no path
        image = load_upload_image(settings, reference)
        assert (image.width, image.height, image.sha256) == (48, 48, content_hash(data))
        assert not (tmp_path / "uploads").exists()
        # A worker configured for disk still reads it: the reference says where it is.
        assert read_upload(load_settings(data_dir=tmp_path / "other", redis_url=REDIS_URL), reference) == data
    finally:
        machine_redis.delete(f"lens:upload:{content_hash(data)}.png")


def test_a_photo_over_the_redis_limit_is_a_413_and_nothing_is_stored(tmp_path, machine_redis):
    data = random_png(64)
    store = make_upload_store(redis_settings(tmp_path, upload_max_bytes=len(data) - 1))
    with pytest.raises(UploadTooLargeError) as raised:
        store.put(data, content_hash(data), "PNG")
    assert raised.value.http_status == 413 and "fleet.upload_max_bytes" in raised.value.message
    assert machine_redis.exists(f"lens:upload:{content_hash(data)}.png") == 0


@pytest.mark.parametrize("backend", ["redis", "disk"])
def test_a_photo_gone_from_the_store_is_upload_expired_410(tmp_path, machine_redis, backend):
    settings = redis_settings(tmp_path) if backend == "redis" else load_settings(data_dir=tmp_path)
    data = random_png()
    reference = make_upload_store(settings).put(data, content_hash(data), "PNG")
    if backend == "redis":
        machine_redis.delete(f"lens:upload:{content_hash(data)}.png")  # as its TTL would
    else:
        (tmp_path / "uploads" / f"{content_hash(data)}.png").unlink()
    assert not upload_exists(settings, reference)
    for read in (read_upload, load_upload_image, upload_source):
        with pytest.raises(UploadExpiredError, match="no longer stored") as raised:
            read(settings, reference)
        assert raised.value.http_status == 410


def test_a_job_whose_photo_expired_fails_with_a_message(tmp_path, machine_redis):
    """Both branches meet the missing key and say so; the job fails with that message."""
    from test_workers_units import StubRuntime

    from workers.tasks import merge_job, run_branch

    runtime = StubRuntime(redis_settings(tmp_path), MemoryStore())
    job_id = new_job_id()
    runtime.jobs.create(JobRecord(job_id=job_id, image_id="0" * 64, upload_ref="redis:" + "0" * 64 + ".jpg",
                                  width=10, height=10, options={"regions": True, "text": True},
                                  cache_key="k" + job_id))
    for branch in ("regions", "text"):
        run_branch(runtime, job_id, branch)
        assert runtime.jobs.part(job_id, branch)["code"] == "upload_expired"
    assert merge_job(runtime, job_id) == "failed"
    assert "no longer stored" in runtime.jobs.state(job_id).message


def test_submit_through_redis_writes_no_file(tmp_path, machine_redis):
    settings = redis_settings(tmp_path)
    jobs = Jobs(settings, MemoryStore())
    data = random_png()
    sent: list[JobRecord] = []
    try:
        jobs.submit(data, decode_image(data), {}, {"detect": "x"}, sent.append)
        assert sent[0].upload_ref == f"redis:{content_hash(data)}.png"
        assert not (tmp_path / "uploads").exists()
    finally:
        machine_redis.delete(f"lens:upload:{content_hash(data)}.png")


def test_crop_search_by_a_job_whose_photo_expired_is_410(tmp_path, machine_redis):
    from web.app import create_app

    settings = redis_settings(tmp_path)
    app = create_app(settings)
    gateway = app.extensions["lens_gateway"]
    job_id = new_job_id()
    gateway.jobs.create(JobRecord(job_id=job_id, image_id="0" * 64, upload_ref="redis:" + "0" * 64 + ".jpg",
                                  width=100, height=100, options={}, cache_key="k" + job_id), status="done")
    try:
        response = app.test_client().post("/api/v1/search", json={"job_id": job_id, "box": [0, 0, 50, 50]})
        assert response.status_code == 410, response.get_json()
        assert response.get_json()["error"]["code"] == "upload_expired"
    finally:
        for key in machine_redis.scan_iter(f"lens:job:{job_id}*"):
            machine_redis.delete(key)

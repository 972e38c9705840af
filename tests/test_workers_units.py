"""Workers without worker processes: Celery settings, the store, the cache key, uploads, and the
idempotent task bodies (redelivery, a branch whose worker keeps dying, partial failures)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import uuid

import pytest
import redis

from lens.config import REPO_ROOT, load_settings
from workers.jobs import JobRecord, Jobs, new_job_id, result_cache_key, save_upload
from workers.store import MemoryStore, QueueUnavailableError, RedisStore


@pytest.fixture
def fleet_settings(tmp_path):
    return load_settings(data_dir=tmp_path, redis_url="redis://127.0.0.1:6379/14")


def test_celery_is_configured_for_long_idempotent_tasks(fleet_settings):
    from workers.app import make_celery

    conf = make_celery(fleet_settings).conf
    server = fleet_settings.server
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_serializer == conf.result_serializer == "json"
    assert conf.accept_content == ["json"]
    assert (conf.task_soft_time_limit, conf.task_time_limit) == (server.task_soft_time_limit_s, server.task_hard_time_limit_s)
    assert conf.task_soft_time_limit < conf.task_time_limit < conf.broker_transport_options["visibility_timeout"]
    assert conf.result_expires == server.result_expires_s
    assert not conf.task_always_eager
    assert conf.broker_url == conf.result_backend == fleet_settings.redis_url


@pytest.mark.parametrize(("task", "queue"), [
    ("lens.regions", "vision"), ("lens.search", "vision"), ("lens.merge", "vision"), ("lens.item", "vision"),
    ("lens.text", "text"),
    ("lens.index.add", "index"), ("lens.index.update", "index"), ("lens.index.remove", "index"),
])
def test_each_task_goes_to_its_queue(fleet_settings, task, queue):
    from workers.app import make_celery

    app = make_celery(fleet_settings)
    assert task in app.tasks
    assert app.amqp.router.route({}, task)["queue"].name == queue


def test_embedded_celery_is_eager_and_needs_no_broker(tmp_path):
    from web.cli import embedded_settings
    from workers.app import make_celery
    from workers.store import MemoryStore as Memory

    app = make_celery(embedded_settings(load_settings(data_dir=tmp_path)))
    assert app.conf.task_always_eager and app.conf.broker_url == "memory://"
    assert isinstance(app.lens.store, Memory)


def test_importing_the_worker_module_loads_no_model_library():
    """Celery kills a pool process whose start takes over 4 s: models must load on first use."""
    code = ("import sys, time; t = time.perf_counter(); import workers.worker; "
            "heavy = [m for m in ('torch', 'ultralytics', 'onnxruntime', 'faiss', 'rapidocr') if m in sys.modules]; "
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def machine_redis_store() -> RedisStore:
    store = RedisStore("redis://127.0.0.1:6379/14")
    try:
        store.ping()
    except QueueUnavailableError:
        pytest.skip("no Redis at 127.0.0.1:6379")
    return store


@pytest.fixture(params=["memory", "redis"])
def store(request):
    return MemoryStore() if request.param == "memory" else machine_redis_store()


def test_store_operations_and_expiry(store):
    key = f"test:{uuid.uuid4().hex}"
    assert store.get(key) is None
    assert store.set_if_absent(key, "a", ttl_s=0.3)
    assert not store.set_if_absent(key, "b", ttl_s=5)
    assert store.get(key) == "a"
    assert [store.incr(key + ":n", ttl_s=5) for _ in range(3)] == [1, 2, 3]
    time.sleep(0.45)
    assert store.get(key) is None, "the TTL did not expire the key"
    store.set(key, "c")
    store.delete(key)
    store.delete(key + ":n")
    assert store.get(key) is None


def test_unreachable_redis_is_a_quick_typed_503():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket closes
    store = RedisStore(f"redis://:secret@127.0.0.1:{port}/0")
    start = time.monotonic()
    with pytest.raises(QueueUnavailableError) as info:
        store.ping()
    assert time.monotonic() - start < 5
    assert info.value.http_status == 503 and "secret" not in info.value.message


def test_cache_key_covers_image_models_and_options():
    base = result_cache_key("a" * 64, {"detect": "x"}, {"max_regions": 5, "target_lang": "en"})
    assert base == result_cache_key("a" * 64, {"detect": "x"}, {"target_lang": "en", "max_regions": 5})
    assert base != result_cache_key("b" * 64, {"detect": "x"}, {"max_regions": 5, "target_lang": "en"})
    assert base != result_cache_key("a" * 64, {"detect": "y"}, {"max_regions": 5, "target_lang": "en"})
    assert base != result_cache_key("a" * 64, {"detect": "x"}, {"max_regions": 4, "target_lang": "en"})


def test_uploads_are_stored_once_under_their_content_hash(tmp_path, bus_jpg):
    from lens.image import content_hash

    data = bus_jpg.read_bytes()
    first = save_upload(tmp_path / "uploads", data, content_hash(data), "JPEG")
    second = save_upload(tmp_path / "uploads", data, content_hash(data), "JPEG")
    assert first == second and first.name == f"{content_hash(data)}.jpg"
    assert first.read_bytes() == data
    assert [p.name for p in (tmp_path / "uploads").iterdir()] == [first.name]


def test_submit_caches_follows_and_enqueues_in_one_call(tmp_path, bus_jpg):
    """Jobs.submit is a photo's one way in: a new photo is enqueued once, the same photo again
    follows the live job, a finished result answers from the cache, and an enqueue that fails
    releases its claim so that the retry is sent rather than told to follow a job never sent."""
    from lens.image import decode_image

    settings = load_settings(data_dir=tmp_path, server={"result_cache_ttl_s": 60})
    jobs = Jobs(settings, MemoryStore())
    data = bus_jpg.read_bytes()
    image = decode_image(data)
    sent: list[JobRecord] = []

    def broken(record: JobRecord) -> None:
        raise QueueUnavailableError("queue down")

    with pytest.raises(QueueUnavailableError):
        jobs.submit(data, image, {"text": True}, {"detect": "x"}, broken)
    first = jobs.submit(data, image, {"text": True}, {"detect": "x"}, sent.append)
    assert first.outcome == "queued" and [r.job_id for r in sent] == [first.job_id]
    assert sent[0].upload_ref.endswith(".jpg") and (tmp_path / "uploads").is_dir()
    again = jobs.submit(data, image, {"text": True}, {"detect": "x"}, sent.append)
    assert (again.outcome, again.job_id, len(sent)) == ("following", first.job_id, 1)
    jobs.save_result(sent[0].cache_key, '{"regions": []}')
    jobs.set_state(first.job_id, "done", result_key=sent[0].cache_key)
    jobs.release_inflight(sent[0].cache_key)
    cached = jobs.submit(data, image, {"text": True}, {"detect": "x"}, sent.append)
    assert (cached.outcome, cached.result_json, len(sent)) == ("cached", '{"regions": []}', 1)
    other_models = jobs.submit(data, image, {"text": True}, {"detect": "y"}, sent.append)
    assert other_models.outcome == "queued" and len(sent) == 2


# -- task bodies -------------------------------------------------------------------------------
class StubRuntime:
    """The runtime a task sees, with the settings and store only (no pipeline is needed for
    the paths tested here: redelivery, attempts exhausted, merge)."""

    def __init__(self, settings, store):
        from workers.app import Runtime

        self._runtime = Runtime(settings, store)
        self.settings, self.store, self.jobs = settings, store, self._runtime.jobs

    def worker_name(self):
        return "test:1"

    def decoded(self, path):
        return None  # a worker process: every branch decodes its upload itself

    def pipeline(self):
        return self._runtime.pipeline()


@pytest.fixture
def runtime(tmp_path, bus_jpg):
    settings = load_settings(data_dir=tmp_path, server={"max_attempts": 2})
    return StubRuntime(settings, MemoryStore())


def new_job(runtime, bus_jpg, **options) -> str:
    job_id = new_job_id()
    runtime.jobs.create(JobRecord(job_id=job_id, image_id="0" * 64, upload_ref=str(bus_jpg), width=810,
                                  height=1080, options={"regions": True, "text": True, **options},
                                  cache_key="k" + job_id))
    return job_id


def test_a_branch_whose_worker_keeps_dying_fails_the_job_with_a_clear_message(runtime, bus_jpg):
    from workers.tasks import merge_job, run_branch

    job_id = new_job(runtime, bus_jpg)
    for name in ("regions", "text"):
        for _ in range(runtime.settings.server.max_attempts):
            runtime.jobs.count_try(job_id, name)  # earlier deliveries whose process died
        run_branch(runtime, job_id, name)
    assert merge_job(runtime, job_id) == "failed"
    state = runtime.jobs.state(job_id)
    assert state.status == "failed"
    assert "stopped after 2 attempts" in state.message and "died" in state.message


def test_redelivered_branch_and_merge_do_nothing_twice(runtime, bus_jpg):
    from workers.tasks import merge_job, run_branch

    job_id = new_job(runtime, bus_jpg, regions=False, text=False)
    for name in ("regions", "text"):
        run_branch(runtime, job_id, name)
        run_branch(runtime, job_id, name)  # redelivery: output exists, returns at once
    assert runtime.jobs.task_count("regions") == runtime.jobs.task_count("text") == 1
    assert merge_job(runtime, job_id) == "done"
    assert merge_job(runtime, job_id) == "done"
    assert runtime.jobs.task_count("merge") == 1


def test_one_failed_branch_gives_a_result_with_a_warning_that_is_not_cached(runtime, bus_jpg):
    from workers.tasks import merge_job

    job_id = new_job(runtime, bus_jpg)
    runtime.jobs.save_part(job_id, "regions", {"regions": [], "timings_ms": {"detect": 1.0}})
    runtime.jobs.save_part(job_id, "text", {"error": "model 'pp-ocrv6-small' is missing"})
    assert merge_job(runtime, job_id) == "done"
    state = runtime.jobs.state(job_id)
    result = json.loads(runtime.jobs.result(state.result_key))
    assert result["warnings"] == ["text: model 'pp-ocrv6-small' is missing"]
    assert runtime.jobs.cached_result("k" + job_id) is None


def test_jobs_expire_with_their_ttl():
    settings = load_settings(server={"job_ttl_s": 60})
    jobs = Jobs(settings, MemoryStore())
    assert jobs.ttl == 60
    with pytest.raises(Exception, match="no job"):
        jobs.record(new_job_id())


def test_store_errors_are_503_not_500(monkeypatch):
    store = RedisStore("redis://127.0.0.1:6379/14")

    def boom(*args, **kwargs):
        raise redis.ConnectionError("connection reset")

    monkeypatch.setattr(store._redis, "get", boom)
    with pytest.raises(QueueUnavailableError):
        store.get("x")


def test_a_branch_killed_at_the_hard_time_limit_fails_the_job_at_once(tmp_path, bus_jpg):
    """Celery calls on_failure(TimeLimitExceeded) in the worker's main process after killing the
    child; the job must fail then, not wait for the job deadline."""
    from celery.exceptions import TimeLimitExceeded, WorkerLostError

    from web.cli import embedded_settings
    from workers.app import make_celery

    app = make_celery(embedded_settings(load_settings(data_dir=tmp_path)))
    jobs = app.lens.jobs
    job_id = new_job(StubRuntime(app.lens.settings, app.lens.store), bus_jpg)
    # A lost worker is not a failure: its message is redelivered, so nothing is recorded.
    app.tasks["lens.text"].on_failure(WorkerLostError("killed"), f"{job_id}-text", [job_id], {}, None)
    assert jobs.part(job_id, "text") is None
    for name in ("regions", "text"):
        app.tasks[f"lens.{name}"].on_failure(TimeLimitExceeded(150), f"{job_id}-{name}", [job_id], {}, None)
    state = jobs.state(job_id)
    assert state.status == "failed"
    assert "hard limit" in state.message and "text:" in state.message

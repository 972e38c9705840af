"""The embedded server (one process, Celery eager) computes side by side: a photo's text branch
beside its regions branch, and several clients' photos at once on the compute pool; each photo
is decoded once. Real models, real photos; the branches are wrapped to record what overlapped
(a barrier that only opens when both sides are running at once), never timed."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from lens.config import REPO_ROOT, load_settings

BARRIER_TIMEOUT_S = 60.0  # models are loaded before; one branch of one photo takes < 2 s


@pytest.fixture
def embedded_app(tmp_path):
    from web.app import create_app
    from web.cli import embedded_settings

    settings = embedded_settings(load_settings(
        data_dir=tmp_path, models_dir=REPO_ROOT / "var" / "models", server={"rate_limit_per_minute": 0,
                                                                            "compute_threads": 2}))
    app = create_app(settings)
    runtime = app.extensions["lens_gateway"].runtime
    runtime.pipeline().warm_up()
    return app, runtime


def _wrap(runtime, name: str, before):
    pipeline = runtime.pipeline()
    inner = getattr(pipeline, name)

    def wrapped(*args, **kwargs):
        before(name)
        return inner(*args, **kwargs)

    setattr(pipeline, name, wrapped)


def _post(app, path):
    with path.open("rb") as fh:
        return app.test_client().post("/api/v1/analyze", data={"image": (fh, path.name)})


def test_text_branch_runs_beside_the_regions_branch(embedded_app, bus_jpg):
    app, runtime = embedded_app
    both_running = threading.Barrier(2, timeout=BARRIER_TIMEOUT_S)
    threads: dict[str, str] = {}

    def meet(name: str) -> None:
        threads[name] = threading.current_thread().name
        both_running.wait()  # BrokenBarrierError (a failed branch) if the other never starts

    _wrap(runtime, "find_regions", meet)
    _wrap(runtime, "read_text", meet)
    response = _post(app, bus_jpg)
    assert response.status_code == 200, response.get_json()
    result = response.get_json()["result"]
    assert not result["warnings"], result["warnings"]
    assert result["regions"] and threads["find_regions"] != threads["read_text"]


def test_two_clients_are_computed_at_once(embedded_app, bus_jpg, zidane_jpg):
    app, runtime = embedded_app
    two_photos = threading.Barrier(2, timeout=BARRIER_TIMEOUT_S)
    # Two compute threads: the barrier opens only if both photos' regions branches run at once.
    _wrap(runtime, "find_regions", lambda _: two_photos.wait())
    with ThreadPoolExecutor(2) as clients:
        responses = list(clients.map(lambda p: _post(app, p), [bus_jpg, zidane_jpg]))
    for response in responses:
        assert response.status_code == 200, response.get_json()
        assert response.get_json()["result"]["regions"]


def test_each_photo_is_decoded_once(embedded_app, bus_jpg, monkeypatch):
    app, _ = embedded_app
    import lens.image
    import workers.tasks

    calls = []
    real = lens.image.decode_image

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr("web.gateway.decode_image", counting)
    monkeypatch.setattr(workers.tasks, "load_upload_image", lambda *a, **k: pytest.fail("re-decoded the upload"))
    response = _post(app, bus_jpg)
    assert response.status_code == 200 and response.get_json()["result"]["regions"]
    assert len(calls) == 1
    job_id = response.get_json()["job_id"]
    search = app.test_client().post("/api/v1/search", json={"job_id": job_id, "box": [0, 0, 400, 400]})
    assert search.status_code in (200, 503), search.get_json()  # 503: no catalog in this data dir



def test_a_synchronous_call_while_another_one_runs_is_no_500(embedded_app):
    # Celery's "never get() inside a task" guard is one process-wide flag that every eager
    # apply_async sets while its task runs: with two compute threads, a thumbnail's get()
    # raised while another request's task was running (HTTP 500 on half the thumbnails).
    app, _ = embedded_app
    task = app.extensions["lens_gateway"].celery.tasks["lens.item"]
    inner = task.run
    inside_task, release = threading.Event(), threading.Event()

    def held_once(*args, **kwargs):
        if not inside_task.is_set():
            inside_task.set()
            release.wait(BARRIER_TIMEOUT_S)
        return inner(*args, **kwargs)

    task.run = held_once
    try:
        with ThreadPoolExecutor(1) as client:
            first = client.submit(lambda: app.test_client().get("/api/v1/items/1"))
            assert inside_task.wait(BARRIER_TIMEOUT_S)
            try:
                second = app.test_client().get("/api/v1/items/2")
            finally:
                release.set()
            assert first.result().status_code in (404, 503), first.result().get_json()
    finally:
        task.run = inner
    assert second.status_code in (404, 503), second.get_json()

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
    monkeypatch.setattr(workers.tasks, "load_image_file", lambda *a, **k: pytest.fail("re-decoded the upload"))
    response = _post(app, bus_jpg)
    assert response.status_code == 200 and response.get_json()["result"]["regions"]
    assert len(calls) == 1
    job_id = response.get_json()["job_id"]
    search = app.test_client().post("/api/v1/search", json={"job_id": job_id, "box": [0, 0, 400, 400]})
    assert search.status_code in (200, 503), search.get_json()  # 503: no catalog in this data dir


def test_synchronous_calls_beside_a_running_photo_never_fail(embedded_app, bus_jpg):
    """Item and thumbnail reads while a photo's branches run on the other compute threads (the UI
    loads match thumbnails while the user analyses the next photo): none may answer 500."""
    app, _ = embedded_app
    with ThreadPoolExecutor(4) as clients:
        analysis = clients.submit(_post, app, bus_jpg)
        reads = [clients.submit(lambda: app.test_client().get("/api/v1/items/1")) for _ in range(12)]
        statuses = [r.result().status_code for r in reads]
        assert analysis.result().status_code == 200
    assert all(status in (404, 503) for status in statuses), statuses  # no catalog here: 503
    assert app.test_client().get("/api/v1/items/1").status_code in (404, 503)

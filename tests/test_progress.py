"""A job's stages, as the pipeline runs: recorded on the job, in `GET /api/v1/jobs/<id>`, and
streamed as server-sent events by `GET /api/v1/jobs/<id>/events`. The embedded server with real
models on a real photo (a catalog is not needed: without one no 'searching' stage is entered)."""

from __future__ import annotations

import json
import time

import pytest

from lens.config import REPO_ROOT, ServerConfig, load_settings
from lens.stages import PROGRESS as STAGES

NO_RATE_LIMIT = {"rate_limit_per_minute": 0} if "rate_limit_per_minute" in ServerConfig.model_fields else {}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from web.app import create_app
    from web.cli import embedded_settings

    settings = embedded_settings(load_settings(
        data_dir=tmp_path_factory.mktemp("progress-data"), models_dir=REPO_ROOT / "var" / "models",
        server={**NO_RATE_LIMIT, "result_cache_ttl_s": 0}))
    return create_app(settings).test_client()


def parse_events(raw: str) -> list[tuple[str, dict]]:
    events = []
    for chunk in raw.split("\n\n"):
        lines = [line for line in chunk.splitlines() if line and not line.startswith(":")]
        name = next((line[7:] for line in lines if line.startswith("event: ")), None)
        data = next((line[6:] for line in lines if line.startswith("data: ")), None)
        if name and data:
            events.append((name, json.loads(data)))
    return events


def test_async_analysis_streams_its_stages_in_order_then_the_result(client, bus_jpg):
    response = client.post("/api/v1/analyze", data={"image": (bus_jpg.open("rb"), "bus.jpg")},
                           headers={"Prefer": "respond-async"})
    assert response.status_code == 202, response.get_json()
    job_id = response.get_json()["job_id"]
    assert response.headers["Location"].endswith(job_id)

    stream = client.get(f"/api/v1/jobs/{job_id}/events")
    assert stream.status_code == 200
    assert stream.mimetype == "text/event-stream"
    events = parse_events(stream.get_data(as_text=True))
    names = [name for name, _ in events]
    assert names[-1] == "end" and set(names[:-1]) == {"progress"}
    seen = [data["stage"] for name, data in events if name == "progress"]
    assert seen[-1] == "done"
    assert len(set(seen)) >= 2, seen  # the stream caught the job before it finished

    end = events[-1][1]
    assert end["status"] == "done" and end["result"]["regions"]
    stages = [s["stage"] for s in end["stages"]]
    # The regions and text branches run side by side, so their stages interleave.
    assert stages[0] == "uploaded" and stages[-1] == "done"
    assert {"detecting", "reading_text"} <= set(stages) <= set(STAGES)
    times = [s["at"] for s in end["stages"]]
    assert times == sorted(times)

    # Polling (the fallback) gives the same stages.
    job = client.get(f"/api/v1/jobs/{job_id}").get_json()
    assert job["stage"] == "done" and [s["stage"] for s in job["stages"]] == stages


def test_polling_sees_the_job_move_before_it_is_done(client, zidane_jpg):
    response = client.post("/api/v1/analyze", data={"image": (zidane_jpg.open("rb"), "z.jpg")},
                           headers={"Prefer": "respond-async"})
    job_id = response.get_json()["job_id"]
    seen = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        job = client.get(f"/api/v1/jobs/{job_id}").get_json()
        if not seen or seen[-1] != job["stage"]:
            seen.append(job["stage"])
        if job["status"] in ("done", "failed"):
            break
        time.sleep(0.05)
    assert job["status"] == "done", job
    # At least one stage before done: the branches run side by side, so a poll may see only
    # the later of two stages entered at once.
    assert seen[0] in ("uploaded", "detecting", "reading_text") and seen[-1] == "done" and len(seen) >= 2, seen


def test_without_prefer_the_embedded_server_still_answers_200_with_the_result(client, bus_jpg):
    response = client.post("/api/v1/analyze", data={"image": (bus_jpg.open("rb"), "bus.jpg")})
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "done" and body["stage"] == "done" and body["result"]["regions"]


def test_events_of_an_unknown_job_are_a_404_json_error(client):
    response = client.get(f"/api/v1/jobs/{'0' * 32}/events")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "job_not_found"


def test_when_every_stream_slot_is_taken_events_answer_503_and_polling_still_works(client, bus_jpg):
    job_id = client.post("/api/v1/analyze", data={"image": (bus_jpg.open("rb"), "bus.jpg")}).get_json()["job_id"]
    slots = client.application.extensions["lens_streams"]
    taken = 0
    while slots.acquire(blocking=False):
        taken += 1
    try:
        response = client.get(f"/api/v1/jobs/{job_id}/events")
        assert response.status_code == 503 and response.get_json()["error"]["code"] == "busy"
        assert response.headers["Retry-After"]
        assert client.get(f"/api/v1/jobs/{job_id}").status_code == 200
    finally:
        for _ in range(taken):
            slots.release()
    # A finished stream, and one never read, give their slot back.
    for _ in range(3):
        with client.get(f"/api/v1/jobs/{job_id}/events") as stream:  # WSGI servers close it
            assert stream.status_code == 200
    client.get(f"/api/v1/jobs/{job_id}/events", buffered=False).close()
    free = 0
    while slots.acquire(blocking=False):
        free += 1
    for _ in range(free):
        slots.release()
    assert free == taken


def test_the_fleet_gateway_streams_on_at_most_half_its_threads():
    from lens.config import load_settings
    from web.progress import EMBEDDED_MAX_STREAMS, max_streams

    assert max_streams(load_settings(server={"gateway_threads": 8})) == 4
    assert max_streams(load_settings(server={"gateway_threads": 1})) == 1
    assert max_streams(load_settings(server={"embedded": True})) == EMBEDDED_MAX_STREAMS

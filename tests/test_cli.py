"""The `lens` command: exit codes 0 ok, 2 bad input, 3 missing model; readable messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

LENS = [sys.executable, "-m", "lens.cli"]


def run_lens(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("LENS_")}
    full_env.update(env or {})
    return subprocess.run([*LENS, *args], capture_output=True, text=True, env=full_env, timeout=timeout)


@pytest.fixture
def lens_vars(lens_env) -> dict:
    return {k: v for k, v in os.environ.items() if k.startswith("LENS_")}


def test_help_lists_commands():
    out = run_lens("--help")
    assert out.returncode == 0
    for command in ("analyze", "models"):
        assert command in out.stdout


def test_models_list_names_every_stage(lens_vars):
    out = run_lens("models", "list", "--json", env=lens_vars)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    stages = {r["stage"] for r in rows}
    assert {"detect", "saliency", "embed", "ocr", "translate"} <= stages
    for row in rows:
        assert row["source"] and row["licence"]


@pytest.mark.parametrize(
    "make_input,message",
    [
        (lambda d: d / "missing.jpg", "no such file"),
        (lambda d: d, "directory"),
        (lambda d: _write(d / "fake.jpg", b"<html><body>hi</body></html>"), "not a photo"),
        (lambda d: _write(d / "empty.png", b""), "empty"),
    ],
    ids=["missing", "directory", "html-as-jpg", "empty"],
)
def test_analyze_bad_input_exits_2(lens_vars, tmp_path, make_input, message):
    out = run_lens("analyze", str(make_input(tmp_path)), env=lens_vars)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_analyze_missing_model_exits_3(lens_vars, tmp_path, bus_jpg):
    env = dict(lens_vars, LENS_MODELS_DIR=str(tmp_path / "no-models"), LENS_DETECT__BACKEND="ultralytics")
    out = run_lens("analyze", str(bus_jpg), "--no-text", env=env)
    assert out.returncode == 3, out.stderr
    assert "yolov3-tiny-coco" in out.stderr and "lens models prepare" in out.stderr
    assert "Traceback" not in out.stderr


def test_bad_setting_is_a_clear_error(lens_vars, bus_jpg):
    out = run_lens("analyze", str(bus_jpg), env=dict(lens_vars, LENS_DETECT__BACKEND="magic"))
    assert out.returncode == 2
    assert "detect.backend" in out.stderr and "Traceback" not in out.stderr


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_analyze_writes_annotated_photo_and_saliency_map(lens_vars, tmp_path, bus_jpg):
    from PIL import Image

    annotated, saliency = tmp_path / "annotated.jpg", tmp_path / "map.png"
    out = run_lens(
        "analyze", str(bus_jpg), "--no-text", "--out", str(annotated), "--heatmap",
        "--saliency-out", str(saliency), env=lens_vars,
    )
    assert out.returncode == 0, out.stderr
    assert "regions:" in out.stdout and "annotated image" in out.stdout
    with Image.open(bus_jpg) as photo, Image.open(annotated) as drawn, Image.open(saliency) as smap:
        assert drawn.size == photo.size
        assert smap.size == photo.size and smap.mode == "L"
        assert smap.getextrema()[1] > smap.getextrema()[0]  # a map, not a flat image


def test_analyze_json_is_an_analyze_result(lens_vars, bus_jpg):
    from lens.types import AnalyzeResult

    out = run_lens("analyze", str(bus_jpg), "--json", "--no-text", env=lens_vars)
    assert out.returncode == 0, out.stderr
    result = AnalyzeResult.from_json(out.stdout)
    assert (result.width, result.height) == (810, 1080)
    assert any(r.label == "bus" for r in result.regions)

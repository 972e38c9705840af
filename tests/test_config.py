"""Settings: env prefix LENS_, nested sections, lens.toml, unknown keys named in the error."""

from __future__ import annotations

import pytest

from lens.config import ConfigError, load_settings


def test_defaults(lens_env):
    s = load_settings()
    assert s.limits.max_upload_bytes == 20 * 1024 * 1024
    assert s.limits.max_pixels == 50_000_000
    assert s.redis_url.startswith("redis://")
    assert s.api_key is None
    assert s.model_dir.name == "models"


def test_env_overrides_nested(lens_env, monkeypatch):
    monkeypatch.setenv("LENS_DETECT__BACKEND", "ultralytics")
    monkeypatch.setenv("LENS_LIMITS__MAX_PIXELS", "1000")
    monkeypatch.setenv("LENS_API_KEY", "s3cret")
    s = load_settings()
    assert s.detect.backend == "ultralytics"
    assert s.limits.max_pixels == 1000
    assert s.api_key.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(s)


def test_toml_file(lens_env):
    (lens_env / "lens.toml").write_text('redis_url = "redis://example:6380/1"\n[regions]\nmax_regions = 3\n')
    s = load_settings()
    assert s.redis_url == "redis://example:6380/1"
    assert s.regions.max_regions == 3


def test_env_beats_toml(lens_env, monkeypatch):
    (lens_env / "lens.toml").write_text("[regions]\nmax_regions = 3\n")
    monkeypatch.setenv("LENS_REGIONS__MAX_REGIONS", "7")
    assert load_settings().regions.max_regions == 7


@pytest.mark.parametrize(
    "toml,named",
    [
        ("colour = 'red'\n", "colour"),
        ("[detect]\nthreshold = 0.3\n", "detect.threshold"),
        ("[nonsense]\nx = 1\n", "nonsense"),
    ],
)
def test_unknown_toml_key_is_named(lens_env, toml, named):
    (lens_env / "lens.toml").write_text(toml)
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_settings()


@pytest.mark.parametrize("name", ["LENS_COLOUR", "LENS_DETECT__THRESHOLD", "LENS_LIMITS__MAX"])
def test_unknown_env_key_is_named(lens_env, monkeypatch, name):
    monkeypatch.setenv(name, "1")
    with pytest.raises(ConfigError, match=name):
        load_settings()


def test_invalid_value_is_named(lens_env, monkeypatch):
    monkeypatch.setenv("LENS_DETECT__BACKEND", "magic")
    with pytest.raises(ConfigError, match="detect.backend"):
        load_settings()


def test_bad_toml_is_reported(lens_env):
    (lens_env / "lens.toml").write_text("this is = = not toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings()


def test_lens_config_env_points_at_file(lens_env, monkeypatch, tmp_path):
    conf = tmp_path / "elsewhere.toml"
    conf.write_text("[server]\nport = 9999\n")
    monkeypatch.setenv("LENS_CONFIG", str(conf))
    assert load_settings().server.port == 9999
    monkeypatch.setenv("LENS_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="not a file"):
        load_settings()


@pytest.mark.parametrize("stage", ["detect", "saliency", "embed", "ocr", "translate"])
def test_backend_names_come_from_the_stage_table_alone(stage, monkeypatch):
    import importlib

    table = importlib.import_module(f"lens.{stage}").BACKENDS
    for name in table:
        assert getattr(load_settings(**{stage: {"backend": name}}), stage).backend == name
    with pytest.raises(ConfigError, match=f"unknown {stage} backend 'no-such'"):
        load_settings(**{stage: {"backend": "no-such"}})
    # A backend is one file plus its line in the table: config knows it with nothing else.
    monkeypatch.setitem(table, "brand-new", "lens.nowhere:NewBackend")
    assert getattr(load_settings(**{stage: {"backend": "brand-new"}}), stage).backend == "brand-new"


def test_a_backends_own_options_are_checked_by_its_options_model(lens_env, monkeypatch):
    """ocr.options belong to the chosen backend: its Options model (in its own file) checks them
    at load, from the environment too, and a typo names the backend and the option."""
    from lens.ocr import create_ocr

    monkeypatch.setenv("LENS_OCR__BACKEND", "tesseract")
    monkeypatch.setenv("LENS_OCR__OPTIONS__LANGUAGES", '["vi"]')
    assert create_ocr(load_settings()).languages == {"vi"}
    monkeypatch.setenv("LENS_OCR__OPTIONS__LANGAUGES", '["vi"]')
    with pytest.raises(ConfigError, match="ocr backend 'tesseract' options: langauges"):
        load_settings()
    with pytest.raises(ConfigError, match="ocr backend 'rapidocr' options: min_confidence"):
        load_settings(ocr={"backend": "rapidocr", "options": {"min_confidence": 2}})


def test_settings_without_backend_options_import_no_backend(lens_env):
    import subprocess
    import sys

    code = ("import sys; from lens.config import load_settings; load_settings(); "
            "print(sorted(m for m in sys.modules if m.startswith('lens.ocr.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout

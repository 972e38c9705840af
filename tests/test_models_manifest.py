"""models/manifest.toml: every entry is complete, and the offline default set is ready."""

from __future__ import annotations

import importlib

import pytest

from lens.errors import ModelMissingError
from lens.models import get_spec, load_manifest, require

SPECS = load_manifest()


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_entry_is_complete(spec):
    assert spec.stage in {"detect", "saliency", "embed", "textembed", "ocr", "translate"}
    assert spec.description and spec.source and spec.licence
    assert spec.builtin or spec.file or spec.package, "no way to find the file"
    if spec.package:
        assert spec.glob
    if spec.prepare:
        module_name, _, attr = spec.prepare.partition(":")
        assert callable(getattr(importlib.import_module(module_name), attr))


def test_names_are_unique():
    names = [s.name for s in SPECS]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("spec", [s for s in SPECS if s.default], ids=lambda s: s.name)
def test_default_set_is_ready(settings, spec):
    """`make setup` prepared the offline defaults; each is found without network."""
    assert spec.is_ready(settings), f"{spec.name}: {spec.how_to_get(settings)}"


def test_missing_model_message_says_what_and_how(settings, tmp_path):
    empty = settings.model_copy(update={"models_dir": tmp_path / "none"})
    with pytest.raises(ModelMissingError) as info:
        require("yolov3-tiny-coco", empty)
    message = str(info.value)
    assert "yolov3-tiny-coco.onnx" in message and "lens models prepare" in message


def test_optional_download_model_says_how_to_fetch(settings, tmp_path):
    empty = settings.model_copy(update={"models_dir": tmp_path / "none"})
    spec = get_spec("yolo11n")
    assert not spec.is_ready(empty)
    assert "--fetch yolo11n" in spec.how_to_get(empty)

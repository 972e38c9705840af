"""docs/architecture.md's "how to add a backend", followed: a detector written at test time as
one new file, registered by one line in the stage's BACKENDS table, chosen by configuration
alone, runs in a real analysis of a real photo."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

BACKEND_SOURCE = '''
from lens.registry import BackendOptions


class WholePhotoOptions(BackendOptions):
    label: str = "thing"


class WholePhotoDetector:
    """Says the whole photo is one thing: enough to see the plumbing carry it."""

    name = "whole-photo"
    version = "test-1"
    Options = WholePhotoOptions

    def __init__(self, settings):
        self.options = WholePhotoOptions.parse(settings.detect.options)

    def detect(self, rgb):
        from lens.types import Detection

        h, w = rgb.shape[:2]
        return [Detection(box=(0.0, 0.0, float(w), float(h)), label=self.options.label, score=0.99)]
'''


def test_the_doc_names_the_steps_this_test_follows():
    doc = (REPO_ROOT / "docs" / "architecture.md").read_text()
    assert "BACKENDS" in doc and "LENS_DETECT__BACKEND=my-detector" in doc
    assert "class Options(BackendOptions)" in doc and "LENS_DETECT__OPTIONS__" in doc


def test_a_backend_is_one_file_plus_its_line_in_the_table(tmp_path, monkeypatch, lens_env, bus_jpg):
    import lens.detect
    from lens.config import load_settings
    from lens.image import load_image_file
    from lens.pipeline import AnalyzeOptions, Pipeline

    package = tmp_path / "extra_backends"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "whole_photo.py").write_text(BACKEND_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(lens.detect.BACKENDS, "whole-photo", "extra_backends.whole_photo:WholePhotoDetector")
    monkeypatch.setenv("LENS_DETECT__BACKEND", "whole-photo")
    monkeypatch.setenv("LENS_DETECT__OPTIONS__LABEL", "parcel")
    try:
        pipeline = Pipeline(load_settings())
        assert type(pipeline.detector).__name__ == "WholePhotoDetector"
        result = pipeline.analyze(load_image_file(bus_jpg), AnalyzeOptions(text=False, search=False))
    finally:
        sys.modules.pop("extra_backends.whole_photo", None)
        sys.modules.pop("extra_backends", None)
    assert result.regions, "the analysis ran with the new detector"
    assert result.regions[0].label == "parcel", "its own option reached it"
    assert result.model_versions["detect"].startswith("whole-photo:")


def test_a_name_not_in_the_table_is_refused_with_the_known_ones(lens_env, monkeypatch):
    from lens.config import ConfigError, load_settings

    monkeypatch.setenv("LENS_DETECT__BACKEND", "my-detector")
    with pytest.raises(ConfigError, match="unknown detect backend 'my-detector' .*opencv-ssd"):
        load_settings()

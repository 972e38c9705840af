"""The result schema: JSON round trip and the JSON Schema kept in docs/."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from lens.types import AnalyzeResult, Match, Region, TextBlock, TextLine, write_json_schema

DOCS_SCHEMA = Path(__file__).resolve().parents[1] / "docs" / "analyze-result.schema.json"


def sample() -> AnalyzeResult:
    return AnalyzeResult(
        image_id="a" * 64,
        width=810,
        height=1080,
        regions=[
            Region(
                id=1, box=(10.0, 20.0, 300.5, 400.0), kind="object", label="bus", score=0.91,
                scores={"confidence": 0.8, "saliency_mass": 0.4},
                matches=[Match(item_id=7, score=0.83, title="Red bus", thumbnail_url="/api/v1/items/7/thumbnail",
                               metadata={"class": "vehicles", "licence": "GPL-2"})],
            ),
            Region(id=2, box=(0, 0, 5, 5), kind="salient"),
        ],
        text_blocks=[
            TextBlock(
                id=1, polygon=[(0, 0), (10, 0), (10, 5), (0, 5)], text="SAÍDA", confidence=0.97,
                lines=[TextLine(polygon=[(0, 0), (10, 0), (10, 5), (0, 5)], text="SAÍDA", confidence=0.97)],
                language="pt", language_confidence=0.9, translation="EXIT", translation_language="en",
            )
        ],
        timings_ms={"detect": 120.5, "ocr": 640.0},
        model_versions={"detect": "ultralytics:default"},
    )


def test_json_round_trip():
    result = sample()
    again = AnalyzeResult.from_json(result.to_json())
    assert again == result
    assert json.loads(result.to_json())["text_blocks"][0]["text"] == "SAÍDA"


def test_unknown_fields_are_refused():
    data = json.loads(sample().to_json())
    data["regions"][0]["colour"] = "red"
    with pytest.raises(ValidationError):
        AnalyzeResult.model_validate(data)


def test_region_kind_is_constrained():
    with pytest.raises(ValidationError):
        Region(id=1, box=(0, 0, 1, 1), kind="blob")


def test_schema_in_docs_is_current(tmp_path):
    fresh = tmp_path / "schema.json"
    write_json_schema(fresh)
    assert DOCS_SCHEMA.exists(), "run `make schema`"
    assert json.loads(DOCS_SCHEMA.read_text()) == json.loads(fresh.read_text()), "run `make schema`"

"""The result schema shared by the library, the workers, the API and the UI.

Every box and polygon is in pixel coordinates of the original image after EXIF rotation,
whatever resolution a stage worked at internally.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Box = tuple[float, float, float, float]  # x1, y1, x2, y2
Point = tuple[float, float]
RegionKind = Literal["object", "salient"]
# What became of a block's translation: "translated", or why not. The UI words these codes in
# the viewer's language; `translation_note` says the same in English for logs and the CLI.
TranslationStatus = Literal[
    "translated",
    "no_model",  # no model (direct or through the pivot) for the block's language -> target
    "same_language",  # already in the target language
    "unknown_language",  # the language could not be identified
    "number",  # a number or a price
    "no_words",  # no letters at all
    "too_short",
    "name",  # looks like a name or an address
    "same_text",  # the model gave the text back unchanged (a name or a brand)
    "failed",  # the model failed (a corrupt file...)
    "unknown_target",  # the target is not a language tag
]

SCHEMA_VERSION = "1"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Detection(_Model):
    box: Box
    label: str
    score: float
    class_id: int = -1


class Match(_Model):
    item_id: int
    score: float
    title: str = ""
    thumbnail_url: str | None = None
    url: str | None = None
    external_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class Region(_Model):
    id: int
    box: Box
    kind: RegionKind
    label: str | None = None
    # Ranking score used to order regions (higher first).
    score: float = 0.0
    # The components behind `score` (detector confidence, saliency mass, centre distance...).
    scores: dict[str, float] = Field(default_factory=dict)
    matches: list[Match] = Field(default_factory=list)
    # The catalog was searched and no item scored above the floor (index.match_floor): the UI
    # says "no close match in the catalog" instead of listing unrelated items.
    no_close_match: bool = False


class TextLine(_Model):
    polygon: list[Point]
    text: str
    confidence: float


class TextBlock(_Model):
    id: int
    polygon: list[Point]
    text: str
    lines: list[TextLine] = Field(default_factory=list)
    confidence: float = 0.0
    language: str | None = None
    language_confidence: float | None = None
    translation: str | None = None
    translation_language: str | None = None
    # Why `translation` is null (no model for the pair, same language...).
    translation_note: str | None = None
    # The same as a code (None: translation was not asked for).
    translation_status: TranslationStatus | None = None


class AnalyzeResult(_Model):
    schema_version: str = SCHEMA_VERSION
    image_id: str  # sha256 of the uploaded bytes
    width: int
    height: int
    regions: list[Region] = Field(default_factory=list)
    text_blocks: list[TextBlock] = Field(default_factory=list)
    timings_ms: dict[str, float] = Field(default_factory=dict)
    model_versions: dict[str, str] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)

    def to_json(self, **kwargs: Any) -> str:
        return self.model_dump_json(**kwargs)

    @classmethod
    def from_json(cls, text: str | bytes) -> AnalyzeResult:
        return cls.model_validate_json(text)


def write_json_schema(path: Path) -> None:
    """Write the JSON Schema of AnalyzeResult (docs/analyze-result.schema.json)."""
    schema = AnalyzeResult.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")

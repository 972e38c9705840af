"""Safe decoding of uploaded photos.

Order matters: size limit on the bytes, then the format by magic bytes (never by name), then
the header's dimensions against the pixel limit *before* the pixel data is decoded, so a small
file that claims 100000x100000 pixels is refused without allocating anything.
"""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from lens.errors import BadInputError

# We enforce our own pixel limit before load(); Pillow's bomb check would fire with a less
# useful message (and only as a warning below 2x its limit).
Image.MAX_IMAGE_PIXELS = None
ImageFile.LOAD_TRUNCATED_IMAGES = False

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_PIXELS = 50_000_000
# lens.config.LimitsConfig explains both (longest side; longest / shortest side).
DEFAULT_MAX_SIDE = 30_000
DEFAULT_MAX_ASPECT_RATIO = 1000.0

SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")


class ImageError(BadInputError):
    code = "bad_image"


class EmptyImageError(ImageError):
    code = "empty_file"


class ImageTooLargeError(ImageError):
    code = "too_large"
    http_status = 413


class TooManyPixelsError(ImageError):
    code = "too_many_pixels"
    http_status = 413


class SideTooLongError(ImageError):
    code = "side_too_long"
    http_status = 413


class ExtremeAspectError(ImageError):
    code = "extreme_aspect_ratio"


class UnsupportedFormatError(ImageError):
    code = "unsupported_format"
    http_status = 415


class DisguisedDocumentError(UnsupportedFormatError):
    code = "not_an_image"


class TruncatedImageError(ImageError):
    code = "truncated"


class ZeroSizeImageError(ImageError):
    code = "zero_size"


@dataclass(frozen=True)
class DecodedImage:
    """An upright RGB uint8 array plus what we know of the upload."""

    rgb: np.ndarray  # H x W x 3, uint8
    sha256: str
    format: str

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])


def sniff_format(data: bytes) -> str | None:
    """The image format named by the magic bytes, or None."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data.startswith(b"BM"):
        return "BMP"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    return None


_MARKUP_PREFIXES = (b"<?xml", b"<svg", b"<!doctype", b"<html", b"<!--", b"<")


def _looks_like_markup(data: bytes) -> bool:
    head = data[:256].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith(_MARKUP_PREFIXES)


def _declared_size(data: bytes, fmt: str) -> tuple[int, int] | None:
    """Width and height as the header states them, for formats where Pillow rejects a zero size
    with an unspecific error."""
    try:
        if fmt == "PNG" and data[12:16] == b"IHDR":
            return struct.unpack(">II", data[16:24])
        if fmt == "GIF":
            return struct.unpack("<HH", data[6:10])
        if fmt == "BMP":
            width, height = struct.unpack("<ii", data[18:26])
            return width, abs(height)
    except struct.error:
        return None
    return None


def _open_with_plugin(data: bytes, fmt: str) -> Image.Image:
    """Open with the format's own Pillow plugin, not `Image.open`: ultralytics replaces
    `PIL.Image.open` process-wide with a wrapper that, on an unidentified file, tries to install
    pi-heif at run time, which would turn a bad upload into an import error or a pip call."""
    Image.init()
    factory, _accept = Image.OPEN[fmt]
    return factory(io.BytesIO(data), "")


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode_image(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side: int = DEFAULT_MAX_SIDE,
    max_aspect_ratio: float = DEFAULT_MAX_ASPECT_RATIO,
) -> DecodedImage:
    """Decode an upload into an upright RGB array, or raise a typed ImageError. Byte size,
    pixels, longest side and aspect ratio are checked before the pixel data is decoded."""
    if not data:
        raise EmptyImageError("the file is empty")
    if len(data) > max_bytes:
        raise ImageTooLargeError(
            f"the file is {len(data) / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.1f} MB"
        )
    fmt = sniff_format(data)
    if fmt is None:
        if _looks_like_markup(data):
            raise DisguisedDocumentError(
                "this is a text document (SVG/HTML/XML), not a photo; "
                f"send one of: {', '.join(SUPPORTED_FORMATS)}"
            )
        raise UnsupportedFormatError(
            f"not a supported image; send one of: {', '.join(SUPPORTED_FORMATS)}"
        )
    declared = _declared_size(data, fmt)
    if declared is not None and min(declared) <= 0:
        raise ZeroSizeImageError(f"the image has no pixels ({declared[0]}x{declared[1]})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = _open_with_plugin(data, fmt)
    except UnidentifiedImageError:
        raise TruncatedImageError(f"the {fmt} file is damaged or truncated") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise TruncatedImageError(f"the {fmt} file is damaged: {exc}") from None

    width, height = img.size
    if width <= 0 or height <= 0:
        raise ZeroSizeImageError(f"the image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise TooManyPixelsError(
            f"the image is {width}x{height} = {width * height / 1e6:.1f} MP; "
            f"the limit is {max_pixels / 1e6:.0f} MP"
        )
    if max(width, height) > max_side:
        raise SideTooLongError(f"the image is {width}x{height}; the longest side may be {max_side} px")
    if max(width, height) / min(width, height) > max_aspect_ratio:
        raise ExtremeAspectError(
            f"the image is {width}x{height}, a strip of {max(width, height) / min(width, height):.0f}:1; "
            f"the most accepted is {max_aspect_ratio:.0f}:1"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img.seek(0)  # GIF/TIFF/WebP: the first frame
            img.load()
            img = ImageOps.exif_transpose(img) or img
            rgb = _to_rgb(img)
    except Image.DecompressionBombError as exc:
        raise TooManyPixelsError(str(exc)) from None
    except (OSError, ValueError, SyntaxError, EOFError, struct.error) as exc:
        raise TruncatedImageError(f"the {fmt} file is damaged or truncated: {exc}") from None
    if rgb.size == 0:
        raise ZeroSizeImageError("the image has no pixels")
    return DecodedImage(rgb=rgb, sha256=content_hash(data), format=fmt)


def _to_rgb(img: Image.Image) -> np.ndarray:
    """Any Pillow mode -> H x W x 3 uint8, transparency flattened onto white."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        # 16-bit and float images: stretch the used range to 0..255 rather than clip.
        scaled = np.zeros_like(arr) if hi <= lo else (arr - lo) * (255.0 / (hi - lo))
        gray = np.clip(scaled + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    elif mode == "P":
        img = img.convert("RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    rgb = img.convert("RGB")
    return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))


def load_image_file(
    path: str | Path,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side: int = DEFAULT_MAX_SIDE,
    max_aspect_ratio: float = DEFAULT_MAX_ASPECT_RATIO,
) -> DecodedImage:
    """Read and decode a file; a missing or unreadable file is a BadInputError."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > max_bytes:
            raise ImageTooLargeError(
                f"{p}: the file is {size / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.1f} MB"
            )
        data = p.read_bytes()
    except FileNotFoundError:
        raise BadInputError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise BadInputError(f"{p}: is a directory, not an image file") from None
    except PermissionError:
        raise BadInputError(f"{p}: permission denied") from None
    return decode_image(data, max_bytes=max_bytes, max_pixels=max_pixels, max_side=max_side,
                        max_aspect_ratio=max_aspect_ratio)


def resize_max_side(rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Downscale so the longest side is at most max_side; returns (image, scale applied).

    OpenCV's area average: on a 4032 x 3024 camera photo to 1024 px it took a third of the time
    of PIL's bilinear resize (which first copies the array into a PIL image), and its pixels are
    closer to a Lanczos copy's (mean abs difference 0.36 vs 0.55 of 255), so a camera photo's
    dots match its 1024 px copy's more often (bench_dots' camera table).

    While the photo is at least twice the target it is first halved by 2x2 averages (the same
    area average, on OpenCV's fast path for an integer factor): 4032 -> 2016 -> 1024 took half
    the time of 4032 -> 1024 in one step, and the two differ by 0.23 of 255 on average."""
    import cv2

    h, w = rgb.shape[:2]
    longest = max(h, w)
    if longest <= max_side:
        return rgb, 1.0
    scale = max_side / longest
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    work = np.ascontiguousarray(rgb)
    while max(work.shape[:2]) >= 2 * max_side and min(work.shape[:2]) >= 2 * min(size):
        work = cv2.resize(work, (work.shape[1] // 2, work.shape[0] // 2), interpolation=cv2.INTER_AREA)
    return cv2.resize(work, size, interpolation=cv2.INTER_AREA), scale



def crop_box(rgb: np.ndarray, box: tuple[float, float, float, float], margin: float = 0.0) -> np.ndarray:
    """The pixels inside `box` (x1, y1, x2, y2), grown by `margin` x its size on every side.

    Always at least 1x1, so that a degenerate box never yields an empty array.
    """
    h, w = rgb.shape[:2]
    x1, y1, x2, y2 = box
    dx, dy = (x2 - x1) * margin, (y2 - y1) * margin
    left = int(max(0, min(w - 1, np.floor(x1 - dx))))
    top = int(max(0, min(h - 1, np.floor(y1 - dy))))
    right = int(max(left + 1, min(w, np.ceil(x2 + dx))))
    bottom = int(max(top + 1, min(h, np.ceil(y2 + dy))))
    return rgb[top:bottom, left:right]

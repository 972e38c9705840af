"""lens.image.decode_image on real files made here, one case per row."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from lens.image import (
    DisguisedDocumentError,
    EmptyImageError,
    ImageTooLargeError,
    TooManyPixelsError,
    TruncatedImageError,
    UnsupportedFormatError,
    ZeroSizeImageError,
    crop_box,
    decode_image,
    load_image_file,
    resize_max_side,
    sniff_format,
)


def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def gradient(width: int = 64, height: int = 48) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.uint8)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height, dtype=np.uint8)[:, None].repeat(width, 1)
    return Image.fromarray(np.stack([x, y, 255 - x], axis=2))


def png_with_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height, with almost no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (20, 10), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def jpeg_with_orientation(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(gradient(40, 20), "JPEG", exif=exif, quality=95)


def cmyk_jpeg() -> bytes:
    return encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG")


def png16() -> bytes:
    arr = np.linspace(0, 65535, 32 * 8, dtype=np.uint16).reshape(8, 32)
    return encode(Image.fromarray(arr), "PNG")


def transparent_png() -> bytes:
    return encode(Image.new("RGBA", (10, 10), (255, 0, 0, 0)), "PNG")


def palette_png_with_transparency() -> bytes:
    img = Image.new("P", (10, 10), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    return encode(img, "PNG", transparency=0)


GOOD = [
    ("jpeg", lambda: encode(gradient(), "JPEG"), (48, 64), "JPEG"),
    ("png", lambda: encode(gradient(), "PNG"), (48, 64), "PNG"),
    ("webp", lambda: encode(gradient(), "WEBP"), (48, 64), "WEBP"),
    ("gif-animated-first-frame", animated_gif, (10, 20), "GIF"),
    ("bmp", lambda: encode(gradient(), "BMP"), (48, 64), "BMP"),
    ("tiff", lambda: encode(gradient(), "TIFF"), (48, 64), "TIFF"),
    ("exif-rotated-90", lambda: jpeg_with_orientation(6), (40, 20), "JPEG"),
    ("cmyk", cmyk_jpeg, (16, 16), "JPEG"),
    ("16-bit", png16, (8, 32), "PNG"),
    ("alpha", transparent_png, (10, 10), "PNG"),
    ("palette-transparent", palette_png_with_transparency, (10, 10), "PNG"),
]


@pytest.mark.parametrize("name,make,shape,fmt", GOOD, ids=[g[0] for g in GOOD])
def test_decodes_to_upright_rgb(name, make, shape, fmt):
    decoded = decode_image(make())
    assert decoded.rgb.dtype == np.uint8
    assert decoded.rgb.shape == (*shape, 3)
    assert decoded.format == fmt
    assert len(decoded.sha256) == 64


def test_gif_first_frame_colour():
    assert tuple(decode_image(animated_gif()).rgb[5, 5]) == (255, 0, 0)


def test_alpha_is_flattened_on_white():
    assert tuple(decode_image(transparent_png()).rgb[0, 0]) == (255, 255, 255)


def test_cmyk_converted_to_rgb_colour():
    r, g, b = (int(v) for v in decode_image(cmyk_jpeg()).rgb[8, 8])
    assert r > 200 and g < 60 and b < 60  # 100% magenta + yellow = red


def test_16bit_range_preserved():
    rgb = decode_image(png16()).rgb
    assert rgb[0, 0, 0] == 0 and rgb[-1, -1, 0] == 255


def test_exif_orientation_moves_pixels():
    plain = decode_image(jpeg_with_orientation(1)).rgb
    rotated = decode_image(jpeg_with_orientation(6)).rgb
    # Orientation 6 = rotate 90 degrees clockwise for display.
    assert np.abs(rotated.astype(int) - np.rot90(plain, k=-1).astype(int)).mean() < 3


BAD = [
    ("empty", lambda: b"", EmptyImageError),
    ("random-bytes", lambda: bytes(range(256)) * 4, UnsupportedFormatError),
    ("text", lambda: b"hello, this is not a photo", UnsupportedFormatError),
    ("svg", lambda: b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', DisguisedDocumentError),
    ("html", lambda: b"<!DOCTYPE html><html><script>alert(1)</script></html>", DisguisedDocumentError),
    ("svg-with-bom", lambda: b"\xef\xbb\xbf  <svg></svg>", DisguisedDocumentError),
    ("truncated-jpeg", lambda: encode(gradient(), "JPEG")[:300], TruncatedImageError),
    ("truncated-png", lambda: encode(gradient(), "PNG")[:60], TruncatedImageError),
    ("jpeg-magic-only", lambda: b"\xff\xd8\xff\xe0" + b"\0" * 20, TruncatedImageError),
    ("zero-width-png", lambda: png_with_header(0, 10), ZeroSizeImageError),
    ("zero-height-png", lambda: png_with_header(10, 0), ZeroSizeImageError),
    ("bomb-png-header", lambda: png_with_header(100_000, 100_000), TooManyPixelsError),
]


@pytest.mark.parametrize("name,make,error", BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_typed_error(name, make, error):
    with pytest.raises(error) as info:
        decode_image(make())
    assert info.value.message  # a sentence for the user
    assert info.value.http_status in (400, 413, 415)


def test_byte_limit_checked_first():
    data = encode(gradient(), "PNG")
    with pytest.raises(ImageTooLargeError, match="limit"):
        decode_image(data, max_bytes=len(data) - 1)


def test_pixel_limit_refuses_before_decoding():
    # 20000 x 20000 claimed by a file of a few hundred bytes: refused from the header alone.
    data = png_with_header(20_000, 20_000)
    assert len(data) < 1000
    with pytest.raises(TooManyPixelsError):
        decode_image(data, max_pixels=50_000_000)


def test_pixel_limit_is_configurable():
    with pytest.raises(TooManyPixelsError):
        decode_image(encode(gradient(), "PNG"), max_pixels=100)


def test_name_does_not_matter(tmp_path):
    disguised = tmp_path / "photo.jpg"
    disguised.write_bytes(b"<svg xmlns='http://www.w3.org/2000/svg'></svg>")
    with pytest.raises(DisguisedDocumentError):
        load_image_file(disguised)
    real = tmp_path / "notes.txt"
    real.write_bytes(encode(gradient(), "PNG"))
    assert load_image_file(real).format == "PNG"


def test_missing_file_is_bad_input(tmp_path):
    from lens.errors import BadInputError

    with pytest.raises(BadInputError, match="no such file"):
        load_image_file(tmp_path / "nope.jpg")


@pytest.mark.parametrize(
    "data,fmt",
    [(b"\xff\xd8\xff\xdb", "JPEG"), (b"GIF89a", "GIF"), (b"RIFF\0\0\0\0WEBPVP8 ", "WEBP"),
     (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"BM", "BMP"), (b"%PDF-1.4", None)],
)
def test_sniff_format(data, fmt):
    assert sniff_format(data) == fmt


def test_resize_and_crop_helpers():
    rgb = np.zeros((100, 400, 3), dtype=np.uint8)
    small, scale = resize_max_side(rgb, 200)
    assert small.shape == (50, 200, 3) and scale == pytest.approx(0.5)
    assert resize_max_side(rgb, 1000)[1] == 1.0
    # A camera-size photo is halved first, then area-averaged: the size and factor are as if in
    # one step, and the pixels within a few grey levels of the one-step average.
    import cv2

    camera = np.random.default_rng(0).integers(0, 256, (3024, 4032, 3), dtype=np.uint8)
    camera = cv2.GaussianBlur(camera, (0, 0), 3)
    work, factor = resize_max_side(camera, 1024)
    assert work.shape == (768, 1024, 3) and factor == pytest.approx(1024 / 4032)
    one_step = cv2.resize(camera, (1024, 768), interpolation=cv2.INTER_AREA)
    assert np.abs(work.astype(int) - one_step).mean() < 1.0
    assert crop_box(rgb, (10, 10, 20, 30)).shape == (20, 10, 3)
    assert crop_box(rgb, (10, 10, 20, 30), margin=0.5).shape == (40, 20, 3)
    assert crop_box(rgb, (50, 50, 50, 50)).shape[:2] == (1, 1)  # degenerate box: never empty


def test_typed_errors_survive_ultralytics_patching_pil(monkeypatch):
    """ultralytics swaps PIL.Image.open for a wrapper that tries to install pi-heif on files
    Pillow cannot identify; decoding must not go through it."""
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    import ultralytics.utils.patches  # noqa: F401  (importing it applies the patch)

    with pytest.raises(TruncatedImageError):
        decode_image(b"\xff\xd8\xff\xe0" + b"\0" * 20)

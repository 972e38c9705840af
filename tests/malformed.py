"""A corpus of malformed and awkward image files, built in memory (nothing is written to disk).

Each case says what a careful decoder must do with it:
- "error": refuse with a typed lens ImageError (optionally a specific subclass);
- "ok":    decode to an RGB array (odd but legitimate images: 1x1, 20000x20, CMYK, 16-bit ...);
- "any":   either outcome is acceptable (e.g. a polyglot whose image part is valid), as long as
           it is one of the two and never another exception.
Used by tests/test_fuzz_decode.py (the decoder) and tests/test_fuzz_api.py (the HTTP API).
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    expect: str  # "error" | "ok" | "any"
    error_code: str | None = None  # the ImageError.code expected, when it is certain

    def __repr__(self) -> str:  # short ids in pytest output
        return f"Case({self.name}, {len(self.data)} B, {self.expect})"


# -- small builders ---------------------------------------------------------------------------

def _photo_like(width: int, height: int, seed: int = 0) -> Image.Image:
    """A smooth gradient plus noise: compresses like a photo, not like a flat colour."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255 // max(1, width - 1), yy * 255 // max(1, height - 1),
                     (xx + yy) * 255 // max(1, width + height - 2)], axis=2)
    noise = rng.integers(0, 40, size=(height, width, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8), "RGB")


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, payload: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(kind + payload) if crc is None else crc
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc & 0xFFFFFFFF)


def _png_raw(width: int, height: int, bit_depth: int, color_type: int, rows: bytes | None) -> bytes:
    """A PNG built by hand, so that the header may say anything the test wants."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    body = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
    if rows is not None:
        body += _png_chunk(b"IDAT", zlib.compress(rows, 9))
    return body + _png_chunk(b"IEND", b"")


def _patch_jpeg_size(data: bytes, width: int, height: int) -> bytes:
    """Rewrite the frame header (SOF0/SOF2) so the JPEG claims another size."""
    for marker in (b"\xff\xc0", b"\xff\xc2"):
        at = data.find(marker)
        if at >= 0:
            return data[: at + 5] + struct.pack(">HH", height, width) + data[at + 9:]
    raise ValueError("no SOF marker")


def _with_app1(jpeg: bytes, payload: bytes) -> bytes:
    """Insert an APP1 segment (EXIF) right after SOI."""
    segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return jpeg[:2] + segment + jpeg[2:]


def _exif_tiff(entries: list[tuple[int, int, int, bytes]], ifd_offset: int = 8,
               endian: str = "<") -> bytes:
    """An EXIF payload: 'Exif\\0\\0' + TIFF header + one IFD of (tag, type, count, value4)."""
    order = b"II" if endian == "<" else b"MM"
    head = order + struct.pack(endian + "HI", 42, ifd_offset)
    ifd = struct.pack(endian + "H", len(entries))
    for tag, typ, count, value in entries:
        ifd += struct.pack(endian + "HHI", tag, typ, count) + value.ljust(4, b"\0")[:4]
    ifd += struct.pack(endian + "I", 0)
    return b"Exif\x00\x00" + head + ifd


def _gif_bomb_frames(frames: int, width: int, height: int) -> bytes:
    """An animated GIF with many frames; the logical screen may claim a huge size."""
    small = [Image.new("P", (8, 8), i % 256) for i in range(frames)]
    data = bytearray(_encode(small[0], "GIF", save_all=True, append_images=small[1:],
                             duration=1, loop=0))
    data[6:10] = struct.pack("<HH", width, height)
    return bytes(data)


def _gif_claims_size(width: int, height: int) -> bytes:
    data = bytearray(_encode(Image.new("P", (4, 4), 3), "GIF"))
    data[6:10] = struct.pack("<HH", width, height)
    at = data.find(b"\x2c")  # image descriptor: left, top, width, height
    data[at + 5: at + 9] = struct.pack("<HH", width, height)
    return bytes(data)


def _bmp_claims_size(width: int, height: int) -> bytes:
    data = bytearray(_encode(Image.new("RGB", (4, 4), (9, 9, 9)), "BMP"))
    data[18:26] = struct.pack("<ii", width, height)
    return bytes(data)


def _tiff_claims_size(width: int, height: int) -> bytes:
    img = Image.new("L", (4, 4), 7)
    data = bytearray(_encode(img, "TIFF"))
    # Patch ImageWidth (256) and ImageLength (257) in the first IFD (little endian, type SHORT/LONG).
    (ifd,) = struct.unpack("<I", data[4:8])
    (count,) = struct.unpack("<H", data[ifd: ifd + 2])
    for i in range(count):
        at = ifd + 2 + 12 * i
        tag, typ = struct.unpack("<HH", data[at: at + 4])
        if tag in (256, 257):
            value = width if tag == 256 else height
            data[at + 2: at + 12] = struct.pack("<HII", 4, 1, value)
    return bytes(data)


def _webp_claims_size(width: int, height: int) -> bytes:
    """A lossless WebP whose VP8L header claims width x height (14 bits each, max 16384)."""
    data = bytearray(_encode(Image.new("RGB", (4, 4), (1, 2, 3)), "WEBP", lossless=True))
    at = data.find(b"VP8L")
    if at < 0:
        raise ValueError("no VP8L chunk")
    bits = struct.unpack("<I", data[at + 9: at + 13])[0]
    bits = (bits & ~0x0FFFFFFF) | ((width - 1) & 0x3FFF) | (((height - 1) & 0x3FFF) << 14)
    data[at + 9: at + 13] = struct.pack("<I", bits)
    return bytes(data)


def _zip_bytes() -> bytes:
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("payload.txt", "not an image")
    return buf.getvalue()


# -- the corpus -------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def corpus() -> tuple[Case, ...]:
    jpeg = _encode(_photo_like(160, 120, 1), "JPEG", quality=90)
    progressive = _encode(_photo_like(160, 120, 2), "JPEG", quality=90, progressive=True)
    png = _encode(_photo_like(96, 64, 3), "PNG")
    gif = _encode(_photo_like(64, 48, 4).convert("P"), "GIF")
    webp = _encode(_photo_like(64, 48, 5), "WEBP", quality=80)
    bmp = _encode(_photo_like(32, 24, 6), "BMP")
    tiff = _encode(_photo_like(32, 24, 7), "TIFF")
    idat = png.find(b"IDAT")

    cases = [
        # Empty and nearly empty.
        Case("zero_bytes", b"", "error", "empty_file"),
        Case("one_byte", b"\xff", "error", "unsupported_format"),
        Case("jpeg_magic_only", b"\xff\xd8\xff", "error"),
        Case("jpeg_soi_eoi_only", b"\xff\xd8\xff\xd9", "error"),
        Case("png_signature_only", b"\x89PNG\r\n\x1a\n", "error"),
        Case("gif_magic_only", b"GIF89a", "error"),
        Case("riff_webp_header_only", b"RIFF\x04\x00\x00\x00WEBP", "error"),
        Case("tiff_header_only", b"II*\x00\x08\x00\x00\x00", "error"),
        Case("bmp_magic_only", b"BM", "error"),
        # Truncated real files.
        Case("jpeg_truncated_10pct", jpeg[: len(jpeg) // 10], "error"),
        Case("jpeg_truncated_50pct", jpeg[: len(jpeg) // 2], "error"),
        Case("jpeg_truncated_before_eoi", jpeg[:-2], "any"),
        Case("jpeg_progressive_truncated", progressive[: len(progressive) * 2 // 3], "error"),
        Case("png_truncated_in_ihdr", png[:20], "error"),
        Case("png_truncated_in_idat", png[: idat + 40], "error"),
        Case("png_no_iend", png[:-12], "any"),
        Case("gif_truncated", gif[: len(gif) // 2], "error"),
        Case("webp_truncated", webp[: len(webp) // 2], "error"),
        Case("bmp_truncated", bmp[: len(bmp) // 2], "error"),
        Case("tiff_truncated", tiff[: len(tiff) // 3], "error"),
        # Damaged inside.
        Case("png_bad_ihdr_crc", png[:29] + b"\0\0\0\0" + png[33:], "error"),
        Case("png_chunk_length_4gb", png[:33] + b"\xff\xff\xff\xf0" + png[37:], "any"),
        Case("png_zero_by_zero", _png_raw(0, 0, 8, 2, b""), "error"),
        Case("png_bad_bit_depth", _png_raw(4, 4, 7, 2, b"\0" * 64), "error"),
        Case("png_idat_garbage", png[: idat + 4] + bytes(range(256)) * 2 + png[-12:], "error"),
        Case("jpeg_scan_zeroed", jpeg[:300] + b"\0" * (len(jpeg) - 302) + b"\xff\xd9", "any"),
        Case("bmp_pixel_offset_past_end", bmp[:10] + struct.pack("<I", 10**9) + bmp[14:], "error"),
        Case("webp_riff_size_lies", webp[:4] + struct.pack("<I", 10**9) + webp[8:], "any"),
        # Huge dimensions in tiny files: refused from the header, nothing allocated.
        Case("jpeg_claims_65500x65500", _patch_jpeg_size(jpeg, 65500, 65500), "error", "too_many_pixels"),
        Case("png_claims_100000x100000", _png_raw(100_000, 100_000, 8, 2, b"\0" * 1000), "error", "too_many_pixels"),
        Case("png_zlib_bomb_10000x10000", _png_raw(10_000, 10_000, 8, 0, bytes(10_001 * 10_000)), "error", "too_many_pixels"),
        Case("gif_claims_65535x65535", _gif_claims_size(65535, 65535), "error", "too_many_pixels"),
        Case("bmp_claims_60000x60000", _bmp_claims_size(60000, 60000), "error", "too_many_pixels"),
        Case("tiff_claims_80000x80000", _tiff_claims_size(80000, 80000), "error", "too_many_pixels"),
        Case("webp_claims_16384x16384", _webp_claims_size(16384, 16384), "error", "too_many_pixels"),
        # Animated GIF bombs: many frames, or a tiny animation claiming a giant screen.
        Case("gif_2000_frames", _gif_bomb_frames(2000, 8, 8), "ok"),
        Case("gif_animated_screen_65535x65535", _gif_bomb_frames(50, 65535, 65535), "error", "too_many_pixels"),
        # Wrong magic: the name or the claimed type does not matter, the bytes do.
        Case("html_document", b"<!doctype html><html><body><script>alert(1)</script>", "error", "not_an_image"),
        Case("svg_with_script", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', "error", "not_an_image"),
        Case("xml_with_bom", b"\xef\xbb\xbf<?xml version='1.0'?><x/>", "error", "not_an_image"),
        Case("pdf", b"%PDF-1.7\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF", "error", "unsupported_format"),
        Case("zip_archive", _zip_bytes(), "error", "unsupported_format"),
        Case("elf_binary", b"\x7fELF\x02\x01\x01" + b"\0" * 57, "error", "unsupported_format"),
        Case("gzip", b"\x1f\x8b\x08\x00" + b"\0" * 16, "error", "unsupported_format"),
        Case("png_body_behind_jpeg_magic", b"\xff\xd8\xff" + png[3:], "error"),
        Case("jpeg_body_behind_png_magic", b"\x89PNG\r\n\x1a\n" + jpeg[8:], "error"),
        Case("heic_ftyp", b"\0\0\0\x18ftypheic\0\0\0\0mif1heic", "error", "unsupported_format"),
        Case("ico", b"\0\0\1\0\1\0\x10\x10" + b"\0" * 60, "error", "unsupported_format"),
        Case("random_bytes", np.random.default_rng(8).bytes(4096), "error", "unsupported_format"),
        # Polyglots: valid image + something else appended or wrapped.
        Case("jpeg_plus_zip", jpeg + _zip_bytes(), "any"),
        Case("png_plus_html", png + b"<html><script>alert(1)</script></html>", "any"),
        Case("gif_js_polyglot", b"GIF89a/*" + gif[8:] + b"*/=1;alert(1);", "any"),
        Case("html_with_png_inside", b"<html><!--" + png + b"--></html>", "error", "not_an_image"),
        Case("pdf_with_jpeg_inside", b"%PDF-1.4\n" + jpeg, "error", "unsupported_format"),
        # Corrupt EXIF on an otherwise good photo: phones write odd EXIF, so ignore it and decode.
        Case("exif_orientation_9", _with_app1(jpeg, _exif_tiff([(0x0112, 3, 1, struct.pack("<H", 9))])), "ok"),
        Case("exif_orientation_zero", _with_app1(jpeg, _exif_tiff([(0x0112, 3, 1, struct.pack("<H", 0))])), "ok"),
        Case("exif_orientation_rotate", _with_app1(jpeg, _exif_tiff([(0x0112, 3, 1, struct.pack("<H", 6))])), "ok"),
        Case("exif_ifd_offset_past_end", _with_app1(jpeg, _exif_tiff([], ifd_offset=0x7FFFFFF0)), "ok"),
        Case("exif_entry_count_huge", _with_app1(jpeg, b"Exif\x00\x00II*\x00\x08\x00\x00\x00\xff\xff"), "ok"),
        Case("exif_value_offset_past_end", _with_app1(jpeg, _exif_tiff([(0x010F, 2, 10_000, struct.pack("<I", 0x7FFFFFFF))])), "ok"),
        Case("exif_orientation_wrong_type", _with_app1(jpeg, _exif_tiff([(0x0112, 2, 4, b"abc\0")])), "ok"),
        Case("exif_big_endian_garbage", _with_app1(jpeg, b"Exif\x00\x00MM\x00*" + b"\xff" * 40), "ok"),
        Case("exif_not_tiff", _with_app1(jpeg, b"Exif\x00\x00hello world"), "ok"),
        Case("exif_self_referencing_ifd", _with_app1(jpeg, _exif_tiff([(0x8769, 4, 1, struct.pack("<I", 8))])), "ok"),
        # Odd but legitimate images: must decode.
        Case("jpeg_1x1", _encode(Image.new("RGB", (1, 1), (200, 10, 10)), "JPEG"), "ok"),
        Case("png_1x1_transparent", _encode(Image.new("RGBA", (1, 1), (0, 0, 0, 0)), "PNG"), "ok"),
        Case("gif_1x1", _encode(Image.new("P", (1, 1), 0), "GIF"), "ok"),
        Case("png_20000x20", _encode(Image.new("L", (20000, 20), 128), "PNG"), "ok"),
        Case("png_20x20000", _encode(Image.new("L", (20, 20000), 128), "PNG"), "ok"),
        Case("jpeg_cmyk", _encode(_photo_like(64, 48, 9).convert("CMYK"), "JPEG"), "ok"),
        Case("tiff_cmyk", _encode(_photo_like(64, 48, 10).convert("CMYK"), "TIFF"), "ok"),
        Case("png_16bit_gray", _encode(Image.fromarray(np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 20), "PNG"), "ok"),
        Case("png_16bit_rgb", _png_raw(8, 4, 16, 2, b"".join(b"\0" + bytes(range(48)) for _ in range(4))), "ok"),
        Case("tiff_float32", _encode(Image.fromarray(np.linspace(-1, 1, 64 * 48, dtype=np.float32).reshape(48, 64)), "TIFF"), "ok"),
        Case("tiff_flat_16bit", _encode(Image.fromarray(np.full((8, 8), 5, np.uint16)), "TIFF"), "ok"),
        Case("png_1bit", _encode(_photo_like(33, 17, 11).convert("1"), "PNG"), "ok"),
        Case("png_la", _encode(_photo_like(16, 16, 12).convert("LA"), "PNG"), "ok"),
        Case("gif_palette_transparency", _encode(Image.new("P", (8, 8), 1), "GIF", transparency=1), "ok"),
        Case("bmp_top_down", bmp[:22] + struct.pack("<i", -24) + bmp[26:], "any"),
        Case("tiff_multipage", _encode(Image.new("L", (4, 4)), "TIFF", save_all=True,
                                                   append_images=[Image.new("L", (4, 4))]), "ok"),
    ]
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), "duplicate case names"
    return tuple(cases)


def seeds() -> list[bytes]:
    """Small valid files of every supported format, for mutation-based fuzzing."""
    img = _photo_like(24, 16, 13)
    return [
        _encode(img, "JPEG", quality=85),
        _encode(img, "JPEG", quality=85, progressive=True),
        _encode(img, "PNG"),
        _encode(img.convert("P"), "GIF"),
        _encode(img, "WEBP", quality=80),
        _encode(img, "WEBP", lossless=True),
        _encode(img, "BMP"),
        _encode(img, "TIFF"),
        _encode(img, "TIFF", compression="tiff_lzw"),
        _with_app1(_encode(img, "JPEG"), _exif_tiff([(0x0112, 3, 1, struct.pack("<H", 6))])),
    ]

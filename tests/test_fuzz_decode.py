"""lens.image.decode_image on hostile bytes: a DecodedImage or a typed ImageError, nothing else.

The corpus (tests/malformed.py) pins the expected outcome of each known-bad file; hypothesis then
throws random bytes, random bytes behind every magic number we sniff, and byte-level mutations
of small valid files of every supported format at it.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from malformed import Case, corpus, seeds

from lens.image import DecodedImage, ImageError, decode_image

# Tighter than the server default so that a mutated header claiming ~50 MP cannot make one
# example allocate 150 MB; the limit logic is the same.
FUZZ_MAX_PIXELS = 4_000_000
MAGICS = [b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"GIF87a", b"RIFF\0\0\0\0WEBP",
          b"BM", b"II*\x00", b"MM\x00*"]


def decode_or_image_error(data: bytes, **limits) -> DecodedImage | ImageError:
    """The decoder's outcome; any exception other than ImageError propagates and fails the test."""
    try:
        image = decode_image(data, **limits)
    except ImageError as exc:
        assert exc.message and "Traceback" not in exc.message
        assert 400 <= exc.http_status < 500
        return exc
    assert isinstance(image, DecodedImage)
    assert image.rgb.dtype == np.uint8 and image.rgb.ndim == 3 and image.rgb.shape[2] == 3
    assert image.width >= 1 and image.height >= 1
    return image


def test_corpus_has_at_least_40_malformed_files():
    cases = corpus()
    assert len([c for c in cases if c.expect != "ok"]) >= 40
    assert len(cases) == len({c.name for c in cases})


@pytest.mark.parametrize("case", corpus(), ids=lambda c: c.name)
def test_decode_malformed_file_gives_image_or_typed_error(case: Case):
    outcome = decode_or_image_error(case.data)
    if case.expect == "error":
        assert isinstance(outcome, ImageError), f"{case.name} decoded, expected a refusal"
        if case.error_code:
            assert outcome.code == case.error_code, outcome.message
    elif case.expect == "ok":
        assert isinstance(outcome, DecodedImage), f"{case.name} refused: {outcome}"


@pytest.mark.parametrize("case", [c for c in corpus() if c.error_code == "too_many_pixels"],
                         ids=lambda c: c.name)
def test_huge_dimensions_refused_from_header_with_413(case: Case):
    with pytest.raises(ImageError) as info:
        decode_image(case.data)
    assert info.value.http_status == 413
    assert "MP" in info.value.message


@pytest.mark.parametrize(("limit", "expect_refusal"), [(10, True), (10**6, False)])
def test_byte_limit_applies_before_decoding(limit, expect_refusal):
    data = seeds()[2]  # a valid PNG, well over 10 bytes and under 1 MB
    outcome = decode_or_image_error(data, max_bytes=limit)
    assert isinstance(outcome, ImageError) == expect_refusal


FUZZ = settings(max_examples=300, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FUZZ
@given(st.binary(max_size=4096))
def test_fuzz_random_bytes(data: bytes):
    decode_or_image_error(data, max_pixels=FUZZ_MAX_PIXELS)


@FUZZ
@given(st.sampled_from(MAGICS), st.binary(max_size=2048))
def test_fuzz_magic_then_random_bytes(magic: bytes, tail: bytes):
    decode_or_image_error(magic + tail, max_pixels=FUZZ_MAX_PIXELS)


@st.composite
def mutated_seed(draw) -> bytes:
    """A small valid image with bytes overwritten, inserted, deleted or cut off."""
    data = bytearray(draw(st.sampled_from(seeds())))
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if not data:
            break
        if op == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[at] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80, 0x01]))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif op == "delete":
            del data[at: at + draw(st.integers(1, 64))]
        else:
            del data[at:]
    return bytes(data)


@settings(max_examples=1500, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutated_seed())
def test_fuzz_mutated_valid_images(data: bytes):
    decode_or_image_error(data, max_pixels=FUZZ_MAX_PIXELS)

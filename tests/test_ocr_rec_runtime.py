"""The line recogniser on OpenVINO (the default where it computes in bf16) and on onnxruntime
(rapidocr's own session; the default elsewhere)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `bench` lives at the repo root

from bench.icdar import icdar_available, load_photo  # noqa: E402
from lens.ocr.ppocr import OpenVinoRecognizerNet, PpOcrLines, recognizer_file, resolved_rec_runtime  # noqa: E402
from lens.threads import native_bf16  # noqa: E402


def test_openvino_recognizer_output_matches_onnxruntime_at_any_line_width():
    import onnxruntime as ort

    session = ort.InferenceSession(str(recognizer_file()), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    net = OpenVinoRecognizerNet(recognizer_file(), threads=1, precision="f32")
    rng = np.random.default_rng(0)
    for width in (320, 96, 640):  # one compiled model, lines of any width
        batch = rng.uniform(-1, 1, (2, 3, 48, width)).astype(np.float32)
        expected = session.run(None, {name: batch})[0]
        got = net(batch)
        assert got.shape == expected.shape
        assert float(np.abs(got - expected).max()) < 1e-4


@pytest.fixture(scope="module")
def photo_lines():
    """The line crops of a real ICDAR photo, found once."""
    if not icdar_available():
        pytest.skip("ICDAR 2015 photos not in ../shared/data")
    bgr = np.ascontiguousarray(load_photo(2)[..., ::-1])
    return [c.crop for c in PpOcrLines(det_max_side=1600, det_upscale=True).find(bgr)]


def test_both_runtimes_read_the_same_text_on_a_real_photo(photo_lines):
    read = [PpOcrLines(rec_runtime=runtime, rec_precision="f32").recognize(photo_lines)
            for runtime in ("openvino", "onnxruntime")]
    assert read[0] and [t for t, _ in read[0]] == [t for t, _ in read[1]]
    assert max(abs(a[1] - b[1]) for a, b in zip(*read, strict=True)) < 1e-3


@pytest.mark.parametrize("runtime", ["openvino", "onnxruntime"])
def test_photos_read_side_by_side_read_as_they_do_alone(photo_lines, runtime):
    """Three photos at once read the same text as one at a time (OpenVINO: each thread gets its
    own infer request; onnxruntime: one session's concurrent runs)."""
    lines = PpOcrLines(rec_runtime=runtime)
    alone = lines.recognize(photo_lines)
    together: list[list[tuple[str, float]]] = [[], [], []]

    def read(slot: int) -> None:
        together[slot] = lines.recognize(photo_lines)

    threads = [threading.Thread(target=read, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert alone and all(r == alone for r in together)


def test_batches_spread_over_two_cores_read_what_one_call_to_rapidocr_reads(photo_lines):
    """recognize makes rapidocr's own batches (sorted by width, rec_batch_num lines each) and
    hands all but one to another core: the same text and scores as rapidocr reading them all."""
    from rapidocr.ch_ppocr_rec import TextRecInput

    crops = photo_lines * 3  # more lines than one batch holds
    lines = PpOcrLines(det_threads=2)
    assert len(crops) > lines._recognizer().rec_batch_num
    whole = lines._recognizer()(TextRecInput(img=crops, return_word_box=False))
    assert lines.recognize(crops) == [(str(t), float(s)) for t, s in zip(whole.txts, whole.scores, strict=True)]


def test_auto_recogniser_runtime_is_openvino_only_where_it_computes_in_bf16():
    assert resolved_rec_runtime("auto", "bf16") == "openvino"
    assert resolved_rec_runtime("auto", "f32") == "onnxruntime"
    assert resolved_rec_runtime("auto", "auto") == ("openvino" if native_bf16() else "onnxruntime")
    assert resolved_rec_runtime("openvino", "f32") == "openvino"
    assert resolved_rec_runtime("onnxruntime", "bf16") == "onnxruntime"


@pytest.mark.parametrize("runtime", ["openvino", "onnxruntime"])
def test_a_lone_batch_on_two_threads_reads_what_one_thread_reads(photo_lines, runtime):
    """A photo whose lines make one batch is read by the recogniser's 2-thread copy: the same
    text and scores as the 1-thread one."""
    crops = photo_lines[:4]
    one_core = PpOcrLines(rec_runtime=runtime, rec_precision="f32")
    two_cores = PpOcrLines(rec_runtime=runtime, rec_precision="f32", det_threads=2)
    calls = []
    wide = two_cores._wide_rec_net
    two_cores._wide_rec_net = lambda batch: calls.append(batch.shape) or wide(batch)
    read = two_cores.recognize(crops)
    assert len(calls) == 1 and calls[0][0] == len(crops)
    alone = one_core.recognize(crops)
    assert alone and [t for t, _ in read] == [t for t, _ in alone]
    assert max(abs(a[1] - b[1]) for a, b in zip(read, alone, strict=True)) < 1e-4

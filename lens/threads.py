"""The one thread policy for every compute library: torch, onnxruntime, OpenVINO, OpenCV and faiss.

On a small shared machine a single photo gains nothing from several intra-op threads (measured:
2 threads no faster than 1 on 2 cores), while threads that spin or oversubscribe the cores make
concurrent requests slower; throughput comes from running several photos at once instead (the
embedded server's compute pool, Celery processes). So each library gets `threads` intra-op
threads (1 by default: settings.server.worker_threads), set here and nowhere else. Bulk jobs
(catalog builds from the CLI) ask for one thread per core.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

# Read by OpenMP (torch, faiss), MKL/OpenBLAS and OpenCV when they load: a library imported
# after apply_thread_policy follows it without being imported here (torch alone costs ~1.5 s).
_ENV_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENCV_FOR_THREADS_NUM")
_threads = 1


def cpu_count() -> int:
    """Cores this process may run on (the affinity mask, not the machine's total)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def current_threads() -> int:
    """The intra-op thread count last applied (sessions created now use it)."""
    return _threads


def apply_thread_policy(threads: int = 1) -> int:
    """Give torch, onnxruntime (sessions created from now on), OpenCV and faiss `threads`
    intra-op threads each. Call it early (before the libraries start their pools); libraries
    not imported yet pick it up through the OMP variables or when their sessions are made."""
    global _threads
    threads = max(1, int(threads))
    _threads = threads
    for name in _ENV_VARIABLES:
        os.environ[name] = str(threads)
    # Libraries already loaded have read the variables: set them directly.
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        torch.set_num_threads(threads)
        with contextlib.suppress(RuntimeError):  # settable only before torch's first parallel work
            torch.set_num_interop_threads(1)
    if "cv2" in sys.modules:
        sys.modules["cv2"].setNumThreads(threads)
    if "faiss" in sys.modules:
        sys.modules["faiss"].omp_set_num_threads(threads)
    # numpy's OpenBLAS read OPENBLAS_NUM_THREADS when numpy was imported, usually before this
    # call: it would keep one thread per core, whose spinning made a 200 x 115 descriptor
    # matmul (re-ranking) 28x slower whenever the other core was busy. Set it at run time.
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads, user_api="blas")
    return threads


def apply_settings_policy(settings, bulk: bool = False) -> int:
    """The policy for a process started with `settings`: server.worker_threads intra-op threads
    per compute thread (requests run side by side instead), or, for a bulk job that runs alone
    (`bulk`: catalog builds), one per core."""
    return apply_thread_policy(cpu_count() if bulk else settings.server.worker_threads)


def one_at_a_time_threads(settings) -> int:
    """Intra-op threads for a model that this process runs for one photo at a time (behind a
    lock, as the text detector is): the embedded server's compute threads share one Pipeline,
    so while one photo is in that model the others wait for it, and the call may use as many
    cores as the pool has; a Celery worker process runs one task at a time on its own
    worker_threads (its siblings are on the other cores)."""
    server = settings.server
    if server.embedded:
        return server.compute_threads or cpu_count()
    return max(1, server.worker_threads)


def onnx_session_options(threads: int | None = None):
    """onnxruntime SessionOptions under the policy: `threads` intra-op threads (default: the
    applied policy), sequential execution, no spinning (a spinning pool steals the core that
    another request's thread needs), full graph optimisation."""
    import onnxruntime as ort

    threads = current_threads() if threads is None else max(1, int(threads))
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


_native_bf16: bool | None = None
_numpy_bridge_ready = False
_numpy_bridge_lock = threading.Lock()


def native_bf16() -> bool:
    """Whether OpenVINO's CPU plugin computes bfloat16 natively here (AVX512-BF16 or AMX)."""
    global _native_bf16
    if _native_bf16 is None:
        import openvino as ov

        _native_bf16 = "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return _native_bf16


def _prime_openvino_numpy_bridge() -> None:
    """Make OpenVINO's Python binding set up its numpy bridge once, here, on one thread. Done
    lazily by two threads' first infer calls at once, it deadlocks: one holds the GIL waiting on
    a C++ static's guard, the other holds the guard waiting for the GIL (seen as a server hung
    at start, its warm-up and first photo embedding at the same moment)."""
    global _numpy_bridge_ready
    with _numpy_bridge_lock:  # waiting here releases the GIL, unlike waiting on the guard
        if not _numpy_bridge_ready:
            import numpy as np
            import openvino as ov

            for dtype in (np.float32, np.uint8):
                ov.Tensor(np.zeros(1, dtype)).data  # noqa: B018 -- the first access does the set-up
            _numpy_bridge_ready = True


def openvino_config(threads: int | None = None, streams: int | None = None, precision: str = "f32") -> dict:
    """OpenVINO CPU compile options under the policy: `threads` intra-op threads per stream
    (default: the applied policy) and `streams` streams (default: one per core, so that the
    compute pool's threads, one per core, each run a request at once instead of queueing on
    one), no pinning of threads to cores (the cores are shared with the other libraries' threads).
    `precision`: "f32" keeps the source graph's outputs (no down-casting); "bf16" computes in
    bfloat16; "auto" is bf16 where the CPU does it natively (native_bf16), else f32. A model
    takes bf16 only where a benchmark showed it costs nothing that matters."""
    _prime_openvino_numpy_bridge()  # every OpenVINO model is compiled with these options
    threads = current_threads() if threads is None else max(1, int(threads))
    streams = cpu_count() if streams is None else max(1, int(streams))
    precision = resolved_precision(precision)
    return {
        "NUM_STREAMS": streams,
        "INFERENCE_NUM_THREADS": threads * streams,
        "INFERENCE_PRECISION_HINT": precision,
        "ENABLE_CPU_PINNING": False,
        "ENABLE_HYPER_THREADING": False,
    }


def resolved_precision(precision: str) -> str:
    """OpenVINO's arithmetic for a precision setting: "auto" is "bf16" where the CPU computes
    it natively (native_bf16), else "f32"; "f32" and "bf16" stay."""
    if precision == "auto":
        precision = "bf16" if native_bf16() else "f32"
    if precision not in ("f32", "bf16"):
        raise ValueError(f"OpenVINO precision {precision!r}: expected auto, f32 or bf16")
    return precision


class PerThreadRequests:
    """One OpenVINO infer request per calling thread for a compiled model: a request holds its
    tensors, while the compiled model is shared and runs as many requests at once as it has
    streams (openvino_config: one per core)."""

    def __init__(self, compiled) -> None:
        self._compiled = compiled
        self._local = threading.local()

    def get(self):
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        return request

    def first_output(self, tensor):
        """The model's first output for `tensor`, on this thread's request (a copy: the request
        reuses its output memory on its next call)."""
        import numpy as np

        return np.array(self.get().infer({0: tensor})[0], dtype=np.float32)


class CompiledPerShape:
    """An OpenVINO model (a file, or an ov.Model) compiled for each input shape it is called with,
    the `keep` most recently used kept: compiled for one static shape, the text detector ran at
    0.76-0.79x the time of the same graph compiled with dynamic sides (1600 x 1216, 1 and 2
    threads), and compiling for a new shape takes ~0.15 s. One infer request per calling
    thread and shape (PerThreadRequests)."""

    def __init__(self, model, config: dict, keep: int = 4) -> None:
        import openvino as ov

        self._core = ov.Core()
        self._model = self._core.read_model(str(model)) if not isinstance(model, ov.Model) else model
        self._config = config
        self._keep = max(1, int(keep))
        self._by_shape: dict[tuple[int, ...], PerThreadRequests] = {}  # insertion order = use order
        self._lock = threading.Lock()

    def requests(self, shape: tuple[int, ...]) -> PerThreadRequests:
        shape = tuple(int(v) for v in shape)
        with self._lock:
            requests = self._by_shape.pop(shape, None)
            if requests is None:
                model = self._model.clone()
                model.reshape({model.inputs[0]: list(shape)})
                requests = PerThreadRequests(self._core.compile_model(model, "CPU", self._config))
            self._by_shape[shape] = requests
            while len(self._by_shape) > self._keep:
                self._by_shape.pop(next(iter(self._by_shape)))
            return requests

    def infer(self, tensor):
        """The first output for `tensor`, from the model compiled for its shape."""
        return self.requests(tensor.shape).first_output(tensor)


def map_beside(pool: Executor | None, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """[fn(item) for item in items], the items after the first handed to `pool` (threads of
    work beside this photo's own) while this thread does the first; an item no pool thread has
    started by then is done here too, so a busy pool (other photos' side work) never makes this
    one wait. fn must release the GIL to gain anything (onnxruntime, OpenCV, numpy matmuls)."""
    if pool is None or len(items) < 2:
        return [fn(item) for item in items]
    futures = [pool.submit(fn, item) for item in items[1:]]
    results = [fn(items[0])]
    for item, future in zip(items[1:], futures, strict=True):
        results.append(fn(item) if future.cancel() else future.result())
    return results


def split_for_cores(items: Sequence[T], parts: int | None = None) -> list[list[T]]:
    """`items` in at most `parts` (default: one per core) consecutive, non-empty runs of near
    equal length; concatenated, they are `items` again."""
    parts = max(1, min(len(items), parts or cpu_count()))
    bounds = [round(i * len(items) / parts) for i in range(parts + 1)]
    return [list(items[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]

"""Entry point for real worker processes: `celery -A workers.worker worker -Q vision,text,index`.

Settings come from the environment / lens.toml like everywhere else (LENS_REDIS_URL ...).
Nothing heavy is imported here: Celery kills a child whose start takes over 4 s, so models load
on first use (Runtime.pipeline).
"""

from __future__ import annotations

import os

# Before torch/onnxruntime/faiss are imported by a task: one thread per process unless the
# operator says otherwise (settings.server.worker_threads applies to torch/faiss later).
for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_name, os.environ.get("LENS_SERVER__WORKER_THREADS", "1"))

from lens.config import get_settings  # noqa: E402
from workers.app import make_celery  # noqa: E402

app = make_celery(get_settings())

"""Entry point for real worker processes: `celery -A workers.worker worker -Q vision,text,index`.

Settings come from the environment / lens.toml like everywhere else (LENS_REDIS_URL ...).
Nothing heavy is imported here: Celery kills a child whose start takes over 4 s, so models load
on first use (Runtime.pipeline).
"""

from __future__ import annotations

import os

# Before torch/onnxruntime/faiss are imported by a task: one thread per process unless the
# operator says otherwise (settings.server.worker_threads applies to torch/faiss later).
for _name in ("OMP_NUM_THREADS", "OMP_THREAD_LIMIT", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_name, os.environ.get("LENS_SERVER__WORKER_THREADS", "1"))

from celery.signals import worker_process_init  # noqa: E402

from lens.config import get_settings  # noqa: E402
from workers.app import make_celery  # noqa: E402
from workers.observability import install_task_logging  # noqa: E402

app = make_celery(get_settings())
install_task_logging()


@worker_process_init.connect
def _warm_up_models(**_) -> None:
    # Only the branches of the queues this worker consumes (-Q), so that a vision-only worker
    # never loads OCR models.
    queues = set(app.amqp.queues.consume_from or app.amqp.queues)
    regions, text = "vision" in queues, "text" in queues
    if regions or text:
        app.lens.warm_up_in_background(regions=regions, text=text)

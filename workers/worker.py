"""Entry point for real worker processes: `celery -A workers.worker worker -Q vision,text,index`.

Settings come from the environment / lens.toml like everywhere else (LENS_REDIS_URL ...).
Nothing heavy is imported here: Celery kills a child whose start takes over 4 s, so models load
on first use (Runtime.pipeline).
"""

from __future__ import annotations

from celery.signals import worker_process_init

from lens.config import get_settings
from lens.stages import BRANCHES
from lens.threads import apply_settings_policy
from workers.app import make_celery
from workers.observability import install_task_logging

# Before torch/onnxruntime/faiss/OpenCV load in a task: server.worker_threads each (lens.threads).
apply_settings_policy(get_settings())
app = make_celery(get_settings())
install_task_logging()


@worker_process_init.connect
def _warm_up_models(**_) -> None:
    # Only the branches of the queues this worker consumes (-Q), so that a vision-only worker
    # never loads OCR models.
    queues = set(app.amqp.queues.consume_from or app.amqp.queues)
    branches = tuple(b.name for b in BRANCHES if b.queue in queues)
    if branches:
        app.lens.warm_up_in_background(branches)

"""JSON log lines, one object per line on stderr: the access log, the task log, the CLI."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any


def json_logger(name: str) -> logging.Logger:
    """A logger that writes each record's message (already JSON) as one line to stderr."""
    logger = logging.getLogger(name)
    if not any(getattr(h, "_lens_json", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._lens_json = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def log_json(logger: logging.Logger, **fields: Any) -> None:
    fields = {"ts": round(time.time(), 3), **{k: v for k, v in fields.items() if v is not None}}
    logger.info(json.dumps(fields, separators=(",", ":"), default=str))

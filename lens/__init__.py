"""lens: self-hosted visual search. The core library; knows nothing of Flask or Celery."""

__version__ = "0.2.0"

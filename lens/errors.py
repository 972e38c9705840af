"""Typed errors that cross layers: the CLI maps them to exit codes, the API to HTTP statuses."""

from __future__ import annotations


class LensError(Exception):
    """Base of every error lens reports to a user in words."""

    exit_code = 1
    http_status = 500
    code = "error"
    # A passing fault (a database restarting): the same write may succeed if tried again.
    retryable = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadInputError(LensError):
    """The user's input cannot be used (bad image, bad option)."""

    exit_code = 2
    http_status = 400
    code = "bad_input"


class ModelMissingError(LensError):
    """A model file a stage needs is not on disk; the message says which and how to get it."""

    exit_code = 3
    http_status = 503
    code = "model_missing"

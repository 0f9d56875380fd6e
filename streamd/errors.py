"""The errors every layer may raise; ``streamd.http.errors`` maps each to a status code.

They carry a message written for the API user: what was wrong and, where it helps, how to
fix it. Nothing in them may leak internals (paths, SQL, tracebacks).
"""

from __future__ import annotations


class StreamdError(Exception):
    """Base of the errors that reach a user. ``status`` is the HTTP status it maps to."""

    status = 500
    headers: dict[str, str]

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = dict(headers or {})


class BadRequest(StreamdError):
    status = 400


class Unauthorized(StreamdError):
    status = 401


class Forbidden(StreamdError):
    status = 403


class NotFound(StreamdError):
    status = 404


class MethodNotAllowed(StreamdError):
    status = 405


class Conflict(StreamdError):
    status = 409


class Gone(StreamdError):
    status = 410


class TooLarge(StreamdError):
    status = 413


class UnsupportedMediaType(StreamdError):
    status = 415


class RangeNotSatisfiable(StreamdError):
    status = 416


class ServiceUnavailable(StreamdError):
    status = 503


class InsufficientStorage(StreamdError):
    status = 507

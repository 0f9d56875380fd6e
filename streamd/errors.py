"""The errors every layer may raise; ``streamd.http.errors`` maps each to a status code.

They carry a message written for the API user: what was wrong and, where it helps, how to
fix it. Nothing in them may leak internals (paths, SQL, tracebacks).
"""

from __future__ import annotations


class StreamdError(Exception):
    """Base of the errors that reach a user. ``status`` is the HTTP status it maps to."""

    status = 500
    title = "Internal Server Error"
    headers: dict[str, str]

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = dict(headers or {})


class BadRequest(StreamdError):
    status = 400
    title = "Bad Request"


class Unauthorized(StreamdError):
    status = 401
    title = "Unauthorized"


class Forbidden(StreamdError):
    status = 403
    title = "Forbidden"


class NotFound(StreamdError):
    status = 404
    title = "Not Found"


class MethodNotAllowed(StreamdError):
    status = 405
    title = "Method Not Allowed"


class Conflict(StreamdError):
    status = 409
    title = "Conflict"


class Gone(StreamdError):
    status = 410
    title = "Gone"


class TooLarge(StreamdError):
    status = 413
    title = "Request Entity Too Large"


class UnsupportedMediaType(StreamdError):
    status = 415
    title = "Unsupported Media Type"


class RangeNotSatisfiable(StreamdError):
    status = 416
    title = "Requested Range Not Satisfiable"


class ServiceUnavailable(StreamdError):
    status = 503
    title = "Service Unavailable"


class InsufficientStorage(StreamdError):
    status = 507
    title = "Insufficient Storage"

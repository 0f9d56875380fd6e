"""Per-store figures of image transfers, and why one failed, in words.

One counter update per transfer (when it ends), never per chunk. Served at ``GET /metrics``
(prometheus-client's default registry) with the HTTP figures of ``streamd.http.metrics``.
A failed transfer also logs one line that an operator can act on without the traceback:
``UPLOAD FAILED image=… store=… cause=disk full (…)``.
"""

from __future__ import annotations

import logging

import trio
from prometheus_client import Counter

from streamd.errors import (
    BadRequest,
    Conflict,
    Gone,
    InsufficientStorage,
    NotFound,
    ServiceUnavailable,
    StreamdError,
    TooLarge,
    UnsupportedMediaType,
)
from streamd.io.errors import ObjectNotFound, StoreError

log = logging.getLogger("streamd.transfers")

STORE_BYTES = Counter("streamd_store_bytes", "Image bytes written to (op=write) or read "
                      "from (op=read: streaming reads, cache fills) a store", ["store", "op"])
STORE_ERRORS = Counter("streamd_store_errors", "Transfers into a store that failed, by cause",
                       ["store", "op", "cause"])

# causes that are the server's to fix (logged as warnings); the others are the client's
SERVER_CAUSES = frozenset({"disk full", "registry busy", "store unreachable",
                           "data missing from the store", "internal error"})


def cause_of(exc: BaseException) -> str:
    """A failure's cause in a few words, for the log line and the ``cause`` label."""
    if isinstance(exc, InsufficientStorage):
        return "disk full"
    if isinstance(exc, ObjectNotFound):
        return "data missing from the store"
    if isinstance(exc, ServiceUnavailable) and _from_database(exc):
        return "registry busy"
    if isinstance(exc, StoreError):
        return "store unreachable"
    if isinstance(exc, ServiceUnavailable):
        return "too many transfers"
    if isinstance(exc, TooLarge):
        return "too large"
    if isinstance(exc, UnsupportedMediaType):
        return "data refused"
    if isinstance(exc, BadRequest):
        return "client sent a bad or short body"
    if isinstance(exc, NotFound | Gone | Conflict | trio.Cancelled):
        return "image deleted or changed meanwhile"
    if isinstance(exc, StreamdError):
        return type(exc).__name__
    return "internal error"


def _from_database(exc: BaseException) -> bool:
    cause = exc.__cause__
    return cause is not None and type(cause).__module__.startswith("sqlalchemy")


def written(store: str, size: int) -> None:
    STORE_BYTES.labels(store, "write").inc(size)


def read(store: str, size: int) -> None:
    if size:
        STORE_BYTES.labels(store, "read").inc(size)


def failed(op: str, image_id: str, store: str, exc: BaseException, *,
           logged: bool = False) -> None:
    """Count a transfer that failed with ``exc``, and log it unless the caller already
    does (``logged``)."""
    cause = cause_of(exc)
    STORE_ERRORS.labels(store, op, cause).inc()
    if logged:
        return
    detail = exc.__cause__ or exc
    log.log(logging.WARNING if cause in SERVER_CAUSES else logging.INFO,
            "%s FAILED image=%s store=%s cause=%s (%s: %s)", op.upper(), image_id, store,
            cause, type(detail).__name__, detail)

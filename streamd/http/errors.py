"""Every error leaves as JSON in Glance's shape: ``{"message", "code", "title"}``.

Unknown exceptions become a 500 with a generic message (logged with the traceback here,
never sent to the client).
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus

from streamd.errors import StreamdError

log = logging.getLogger("streamd.http")


def error_body(status: int, message: str) -> bytes:
    phrase = HTTPStatus(status).phrase
    return json.dumps(
        {"message": message, "code": f"{status} {phrase}", "title": phrase}
    ).encode()


def describe(exc: BaseException) -> tuple[int, str, dict[str, str]]:
    """Status, message and extra headers for an exception that escaped a handler."""
    if isinstance(exc, StreamdError):
        return exc.status, exc.message, exc.headers
    log.exception("unexpected error", exc_info=exc)
    return 500, "The server failed to handle the request; see the server log.", {}

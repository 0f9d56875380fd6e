"""Every error leaves as JSON: ``{"error": {"message", "code", "title"}}``.

The one-key envelope is what both OpenStack clients parse: python-glanceclient and
openstacksdk take the ``message`` of each top-level object, and glanceclient crashes on a
flat body (Glance itself sends HTML unless the client asks for JSON, then a flat object that
glanceclient cannot read). Unknown exceptions become a 500 with a generic message, logged
here with the traceback and never sent to the client.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus

from streamd.errors import StreamdError

log = logging.getLogger("streamd.http")


def error_body(status: int, message: str) -> bytes:
    return json.dumps(
        {"error": {"message": message, "code": status, "title": HTTPStatus(status).phrase}}
    ).encode()


def describe(exc: BaseException) -> tuple[int, str, dict[str, str]]:
    """Status, message and extra headers for an exception that escaped a handler."""
    if isinstance(exc, StreamdError):
        return exc.status, exc.message, exc.headers
    log.exception("unexpected error", exc_info=exc)
    return 500, "The server failed to handle the request; see the server log.", {}

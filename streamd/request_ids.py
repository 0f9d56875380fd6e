"""Request ids: the ``x-openstack-request-id`` every answer carries, in the logs and on tasks.

OpenStack clients (python-glanceclient, openstacksdk, tempest) read the id from each answer
and show it when something fails, so an operator can find the request in the server's log.
As oslo.middleware's ``RequestId`` does, a request that brings a valid id of its own
(``X-Openstack-Request-Id: req-<uuid>``, e.g. from a service calling another) keeps it;
anything else gets a fresh ``req-<uuid4>``. (Glance 33 echoes any incoming value and
prefixes ``req-``; streamd accepts only the valid form, so a client cannot write what it
likes into the logs.)

The id of the request being served lives in a context variable: trio copies the context into
every task started from the request, so an import job's log lines and the task it records
carry the id of the request that started it.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

HEADER = "x-openstack-request-id"
# oslo.middleware's check: "req-" and a UUID, lower-case hexadecimal with hyphens
_VALID = re.compile(r"req-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

_current: ContextVar[str | None] = ContextVar("streamd_request_id", default=None)


def new_request_id() -> str:
    return f"req-{uuid.uuid4()}"


def request_id_for(incoming: str | None) -> str:
    """The id of a request that sent ``incoming`` as its ``X-Openstack-Request-Id``."""
    if incoming is not None and _VALID.fullmatch(incoming):
        return incoming
    return new_request_id()


def current_request_id() -> str | None:
    """The id of the request this code runs for (None outside any request)."""
    return _current.get()


@contextmanager
def serving(request_id: str) -> Iterator[None]:
    """``request_id`` is the current one inside, for this task and the tasks it starts."""
    token = _current.set(request_id)
    try:
        yield
    finally:
        _current.reset(token)


class RequestIdLogFilter(logging.Filter):
    """Puts ``request_id`` (the current one, or ``-``) on every log record it passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _current.get() or "-"
        return True

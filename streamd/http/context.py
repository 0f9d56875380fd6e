"""Per-request plumbing for the Quart routes: the running service and who is asking.

The caller's context is established once per request, before routing reaches a handler
(``authenticate_request``, a ``before_request`` hook), by the server's one authenticator
(``streamd.auth``) — the same one the raw-ASGI data routes use.
"""

from __future__ import annotations

import dataclasses

from quart import current_app, g, request

from streamd.auth import Authenticator, context_from_headers
from streamd.context import RequestContext, identity_of
from streamd.service.runtime import Runtime

RUNTIME_KEY = "streamd.runtime"
AUTH_KEY = "streamd.authenticator"
# Blueprints whose routes answer anonymous callers (Glance's version documents).
ANONYMOUS_BLUEPRINTS = ("versions",)

__all__ = ["AUTH_KEY", "RUNTIME_KEY", "authenticate_request", "context", "context_from_headers",
           "runtime"]


def runtime() -> Runtime:
    return current_app.extensions[RUNTIME_KEY]


async def authenticate_request() -> None:
    """Who is asking (401 when the authenticator does not know)."""
    if request.blueprint in ANONYMOUS_BLUEPRINTS:
        return
    authenticator: Authenticator = current_app.extensions[AUTH_KEY]
    ctx = await authenticator.authenticate(request.headers)
    # kept for a request that is replayed to another node (streamd.service.stage_host)
    g.streamd_context = dataclasses.replace(ctx, identity_headers=identity_of(
        request.headers.get))


def context() -> RequestContext:
    return g.streamd_context

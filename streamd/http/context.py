"""Per-request plumbing for the Quart routes: the running service and who is asking."""

from __future__ import annotations

from collections.abc import Mapping

from quart import current_app, request

from streamd.context import RequestContext
from streamd.service.runtime import Runtime

RUNTIME_KEY = "streamd.runtime"


def runtime() -> Runtime:
    return current_app.extensions[RUNTIME_KEY]


def context_from_headers(headers: Mapping[str, str]) -> RequestContext:
    """noauth: trust the identity headers keystonemiddleware would set.

    Without a project header the caller is an anonymous admin, as in Glance's
    ``unauthenticated-context`` pipeline: this mode is for loopback and trusted networks only.
    """
    project = headers.get("X-Project-Id") or headers.get("X-Tenant-Id")
    user = headers.get("X-User-Id")
    roles_header = headers.get("X-Roles")
    if project is None and roles_header is None:
        return RequestContext(project_id=None, user_id=user, roles=frozenset({"admin"}))
    roles = frozenset(r.strip().lower() for r in (roles_header or "").split(",") if r.strip())
    return RequestContext(project_id=project, user_id=user, roles=roles)


def context() -> RequestContext:
    return context_from_headers(request.headers)

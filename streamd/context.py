"""Who is asking: the request context every use case receives."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

# The headers that say who is asking, as keystonemiddleware (or noauth) reads them: what a
# node passes on when it replays a request to another node (an import of data staged
# there), so that the other node sees the same caller.
IDENTITY_HEADERS = ("X-Auth-Token", "X-Project-Id", "X-Tenant-Id", "X-User-Id", "X-Roles")


@dataclass(frozen=True)
class RequestContext:
    project_id: str | None
    user_id: str | None = None
    roles: frozenset[str] = field(default_factory=frozenset)
    # Glance 33's secure RBAC (a reader reads, a member writes); False: the legacy rules,
    # where any role may change its project's images (setting enforce_secure_rbac)
    secure_rbac: bool = True
    # the request's IDENTITY_HEADERS, set by the HTTP layer; never shown (a token)
    identity_headers: tuple[tuple[str, str], ...] = field(default=(), repr=False,
                                                          compare=False)

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


def identity_of(get: Callable[[str], str | None]) -> tuple[tuple[str, str], ...]:
    """The identity headers among a request's (``get`` looks a header up by name)."""
    return tuple((name, value) for name in IDENTITY_HEADERS
                 if (value := get(name)) is not None)

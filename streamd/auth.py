"""Who is asking: one authenticator per server, chosen by the ``auth`` setting.

Every request but the version documents (``GET /``, ``/versions``, ``/v2``, anonymous as in
Glance) is turned into a ``RequestContext`` here, by the metadata routes (a Quart
``before_request`` hook) and by the raw-ASGI data routes alike:

- ``noauth`` trusts the identity headers keystonemiddleware would set (``X-Project-Id`` or
  ``X-Tenant-Id``, ``X-User-Id``, ``X-Roles``); a request without a project or roles is an
  anonymous admin, as behind Glance's ``unauthenticated-context`` pipeline. Anyone who can
  reach the server can be anyone, so it serves loopback addresses only unless
  ``noauth_allow_remote`` says otherwise (``streamd.config``), and then start-up warns.
- ``tokens`` looks ``X-Auth-Token`` up in a static file (``tokens_file``, TOML or JSON)::

      [tokens.s3cr3t-alice]
      project_id = "alice-project"
      user_id = "alice"
      roles = ["member", "reader"]

- ``keystone`` validates ``X-Auth-Token`` with Keystone v3 (``GET /v3/auth/tokens`` with
  streamd's service token as ``X-Auth-Token`` and the user's as ``X-Subject-Token``) and
  caches the answer for ``keystone_cache_ttl`` seconds (never past the token's own
  ``expires_at``). The service token is ``keystone_service_token``, or one fetched with
  ``keystone_service_user``'s password and renewed before it expires or when Keystone
  refuses it.

A missing or unknown token is 401 (with ``WWW-Authenticate``); Keystone unreachable or
refusing streamd's own credentials is 503, as keystonemiddleware answers.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import time
import tomllib
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import trio

from streamd.config import ConfigError, Settings, is_loopback
from streamd.context import RequestContext
from streamd.errors import BadRequest, ServiceUnavailable, Unauthorized

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("streamd.auth")

TOKEN_HEADER = "X-Auth-Token"
CACHE_ENTRIES_MAX = 10_000  # validated tokens kept; past it the expired, then the oldest, go
SERVICE_TOKEN_MARGIN = 60.0  # seconds: renew the service token this long before it expires
ID_LENGTH_MAX = 255  # project and user ids: the registry's owner/member columns, as Glance's


class Headers(Protocol):
    """What an authenticator reads: a request's headers, looked up case-insensitively."""

    def get(self, name: str, default: None = None) -> str | None: ...


class Authenticator(Protocol):
    mode: str

    async def authenticate(self, headers: Headers) -> RequestContext:
        """The caller's context; Unauthorized (401) or ServiceUnavailable (503) if unknown."""
        ...


def _roles(values: Any) -> frozenset[str]:
    return frozenset(str(r).strip().lower() for r in values if str(r).strip())


# -- noauth ------------------------------------------------------------------------------------


def context_from_headers(headers: Headers) -> RequestContext:
    """noauth: trust the identity headers keystonemiddleware would set.

    Without a project header and roles the caller is an anonymous admin, as in Glance's
    ``unauthenticated-context`` pipeline: this mode is for loopback and trusted networks only.
    """
    project = headers.get("X-Project-Id") or headers.get("X-Tenant-Id")
    user = headers.get("X-User-Id")
    for header, value in (("X-Project-Id", project), ("X-User-Id", user)):
        if value is not None and len(value) > ID_LENGTH_MAX:
            raise BadRequest(f"{header} is {len(value)} characters long; an id may have at "
                             f"most {ID_LENGTH_MAX}.")
    roles_header = headers.get("X-Roles")
    if project is None and roles_header is None:
        return RequestContext(project_id=None, user_id=user, roles=frozenset({"admin"}))
    return RequestContext(project_id=project, user_id=user,
                          roles=_roles((roles_header or "").split(",")))


class NoAuth:
    mode = "noauth"

    async def authenticate(self, headers: Headers) -> RequestContext:
        return context_from_headers(headers)


# -- static tokens -----------------------------------------------------------------------------


def _token_required(realm: str) -> Unauthorized:
    return Unauthorized(
        f"Authentication required: send a token in the {TOKEN_HEADER} header.",
        headers={"WWW-Authenticate": realm},
    )


def _token_refused(realm: str) -> Unauthorized:
    return Unauthorized(
        f"The token in {TOKEN_HEADER} is not valid (unknown or expired): get a new one.",
        headers={"WWW-Authenticate": realm},
    )


def load_tokens(path: Path) -> dict[str, RequestContext]:
    """Read a tokens file (``.json``: JSON, anything else: TOML); ConfigError on any flaw."""
    where = f"tokens_file {path}"
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{where}: {e.strerror}") from None
    try:
        doc = json.loads(raw) if path.suffix == ".json" else tomllib.loads(raw.decode())
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigError(f"{where}: not valid {'JSON' if path.suffix == '.json' else 'TOML'}:"
                          f" {e}") from None
    tokens = doc.get("tokens") if isinstance(doc, dict) else None
    if not isinstance(tokens, dict):
        raise ConfigError(f"{where}: expected a 'tokens' table of token = {{project_id, "
                          "user_id, roles}}")
    contexts = {}
    for token, entry in tokens.items():
        name = f"{where}: token {token[:4]}…"
        if len(token) < 8:
            raise ConfigError(f"{name}: tokens must be at least 8 characters long")
        if not isinstance(entry, dict) or not isinstance(entry.get("project_id"), str):
            raise ConfigError(f"{name}: needs project_id (a string)")
        roles = entry.get("roles", [])
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise ConfigError(f"{name}: roles must be a list of strings")
        unknown = set(entry) - {"project_id", "user_id", "roles"}
        if unknown:
            raise ConfigError(f"{name}: unknown keys {', '.join(sorted(unknown))}")
        contexts[token] = RequestContext(project_id=entry["project_id"],
                                         user_id=entry.get("user_id"), roles=_roles(roles))
    return contexts


class StaticTokens:
    """Tokens from a file, read once at start-up."""

    mode = "tokens"
    realm = 'Token realm="streamd"'

    def __init__(self, tokens: Mapping[str, RequestContext]) -> None:
        self._tokens = dict(tokens)

    async def authenticate(self, headers: Headers) -> RequestContext:
        token = headers.get(TOKEN_HEADER)
        if not token:
            raise _token_required(self.realm)
        ctx = self._tokens.get(token)
        if ctx is None:
            raise _token_refused(self.realm)
        return ctx


# -- keystone ----------------------------------------------------------------------------------


def _expires(value: Any) -> float:
    """Keystone's ``expires_at`` (ISO 8601, UTC) as a POSIX time; +inf when absent."""
    if not isinstance(value, str):
        return float("inf")
    moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


@dataclass(frozen=True)
class _Validated:
    context: RequestContext
    valid_until: float  # clock time past which Keystone is asked again


class KeystoneTokens:
    """Validates user tokens with Keystone v3 and caches the answers.

    ``clock`` returns POSIX seconds (wall-clock: token expiry times are wall-clock times);
    tests inject one to expire the cache without sleeping. ``client`` is an
    ``httpx.AsyncClient`` whose lifetime the caller manages (``open_authenticator``).
    """

    mode = "keystone"

    def __init__(self, settings: Settings, client: httpx.AsyncClient,
                 clock: Callable[[], float] = time.time) -> None:
        assert settings.keystone_url
        self._settings = settings
        self._url = settings.keystone_url.rstrip("/") + "/v3/auth/tokens"
        self._client = client
        self._clock = clock
        self._cache: dict[str, _Validated] = {}
        self._service_token = settings.keystone_service_token
        self._service_expires = float("inf")
        self._service_lock = trio.Lock()
        self.realm = f"Keystone uri=\"{settings.keystone_url}\""
        self.validations = 0  # requests sent to Keystone to validate a user token

    async def authenticate(self, headers: Headers) -> RequestContext:
        token = headers.get(TOKEN_HEADER)
        if not token:
            raise _token_required(self.realm)
        now = self._clock()
        cached = self._cache.get(token)
        if cached is not None and cached.valid_until > now:
            return cached.context
        ctx, expires = await self._validate(token)
        self._remember(token, _Validated(ctx, min(now + self._settings.keystone_cache_ttl,
                                                  expires)))
        return ctx

    def _remember(self, token: str, entry: _Validated) -> None:
        if len(self._cache) >= CACHE_ENTRIES_MAX:
            now = self._clock()
            for key in [k for k, v in self._cache.items() if v.valid_until <= now]:
                del self._cache[key]
            while len(self._cache) >= CACHE_ENTRIES_MAX:
                del self._cache[next(iter(self._cache))]  # the oldest entry
        self._cache[token] = entry

    async def _validate(self, token: str) -> tuple[RequestContext, float]:
        for attempt in range(2):
            service = await self._service(renew=attempt > 0)
            self.validations += 1
            response = await self._request(
                "GET", self._url, headers={"X-Auth-Token": service, "X-Subject-Token": token})
            if response.status_code == 200:
                return self._context(response)
            if response.status_code == 404:
                raise _token_refused(self.realm)
            if response.status_code in (401, 403) and self._renewable:
                continue  # streamd's own token expired or was revoked: fetch a new one
            break
        log.error("Keystone answered %d to a token validation with streamd's own credentials",
                  response.status_code)
        raise ServiceUnavailable("The identity service refused to validate tokens for this "
                                 "image service; retry later (an operator should check "
                                 "streamd's keystone_service_* settings).",
                                 headers={"Retry-After": "5"})

    def _context(self, response: httpx.Response) -> tuple[RequestContext, float]:
        try:
            token = response.json()["token"]
            project = token.get("project") or {}
            user = token.get("user") or {}
            roles = _roles(r["name"] for r in token.get("roles") or ())
            expires = _expires(token.get("expires_at"))
        except (ValueError, KeyError, TypeError, AttributeError):
            log.error("Keystone's token validation answer is not a v3 token document")
            raise ServiceUnavailable("The identity service gave an unreadable answer; retry "
                                     "later.") from None
        if expires <= self._clock():
            raise _token_refused(self.realm)
        ctx = RequestContext(project_id=project.get("id"), user_id=user.get("id"), roles=roles)
        return ctx, expires

    @property
    def _renewable(self) -> bool:
        return self._settings.keystone_service_password is not None

    async def _service(self, *, renew: bool) -> str:
        """streamd's own token: the static one, or one fetched with the service password."""
        if not self._renewable:
            assert self._service_token
            return self._service_token
        async with self._service_lock:
            stale = self._clock() >= self._service_expires - SERVICE_TOKEN_MARGIN
            if renew or self._service_token is None or stale:
                self._service_token, self._service_expires = await self._fetch_service_token()
            return self._service_token

    async def _fetch_service_token(self) -> tuple[str, float]:
        s = self._settings
        domain = {"name": s.keystone_service_domain}
        body = {"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": s.keystone_service_user, "domain": domain,
                "password": s.keystone_service_password}}},
            "scope": {"project": {"name": s.keystone_service_project, "domain": domain}},
        }}
        response = await self._request("POST", self._url, json=body)
        token = response.headers.get("X-Subject-Token")
        if response.status_code != 201 or not token:
            log.error("Keystone refused streamd's service credentials (user %s): %d",
                      s.keystone_service_user, response.status_code)
            raise ServiceUnavailable("The identity service refused this image service's own "
                                     "credentials; retry later (an operator should check "
                                     "keystone_service_user/password/project).",
                                     headers={"Retry-After": "5"})
        try:
            expires = _expires(response.json()["token"].get("expires_at"))
        except (ValueError, KeyError, TypeError, AttributeError):
            expires = float("inf")
        log.info("fetched a Keystone service token for %s", s.keystone_service_user)
        return token, expires

    async def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        import httpx  # here, not at the top: a server that never calls out does not load it
        try:
            return await self._client.request(method, url, **kwargs)
        except httpx.HTTPError as e:
            log.warning("Keystone at %s unreachable: %r", self._settings.keystone_url, e)
            raise ServiceUnavailable("The identity service that validates tokens cannot be "
                                     "reached; retry later.",
                                     headers={"Retry-After": "5"}) from None


# -- choosing one ------------------------------------------------------------------------------


def _warn_if_open(settings: Settings) -> None:
    if settings.auth == "noauth" and not is_loopback(settings.host):
        log.warning(
            "!!! auth = noauth on %s (noauth_allow_remote = true): ANY client that can reach "
            "this address can act as ANY project, admin included, by sending X-Project-Id and "
            "X-Roles headers. Use auth = tokens or keystone unless every client is trusted. !!!",
            settings.bind,
        )


@asynccontextmanager
async def open_authenticator(
    settings: Settings, clock: Callable[[], float] = time.time
) -> AsyncIterator[Authenticator]:
    """The authenticator ``settings.auth`` names, with its resources (Keystone's client)."""
    _warn_if_open(settings)
    if settings.auth == "keystone":
        import httpx  # here, not at the top: a server that never calls out does not load it
        timeout = httpx.Timeout(settings.keystone_timeout)
        async with httpx.AsyncClient(timeout=timeout) as client:
            yield _with_rules(KeystoneTokens(settings, client, clock), settings)
        return
    yield make_authenticator(settings)


def make_authenticator(settings: Settings) -> Authenticator:
    """The noauth or tokens authenticator (keystone needs ``open_authenticator``)."""
    if settings.auth == "noauth":
        return _with_rules(NoAuth(), settings)
    if settings.auth == "tokens":
        assert settings.tokens_file is not None
        tokens = load_tokens(settings.tokens_file)
        log.info("auth = tokens: %d token(s) from %s", len(tokens), settings.tokens_file)
        return _with_rules(StaticTokens(tokens), settings)
    raise ConfigError(f"setting 'auth': {settings.auth!r} needs open_authenticator()")


def _with_rules(authenticator: Authenticator, settings: Settings) -> Authenticator:
    """``authenticator`` as is under Glance 33's secure RBAC (the default); with
    ``enforce_secure_rbac = false`` its contexts say the legacy rules apply."""
    if settings.enforce_secure_rbac:
        return authenticator
    log.warning("enforce_secure_rbac = false: the legacy rules apply, any role (reader "
                "included) may create and change its project's images")
    return _LegacyRules(authenticator)


@dataclass
class _LegacyRules:
    inner: Authenticator

    @property
    def mode(self) -> str:
        return self.inner.mode

    async def authenticate(self, headers: Headers) -> RequestContext:
        ctx = await self.inner.authenticate(headers)
        return dataclasses.replace(ctx, secure_rbac=False)

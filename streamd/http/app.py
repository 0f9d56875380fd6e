"""The ASGI application: a dispatcher in front of the Quart app.

Data routes (image bytes) are raw ASGI handlers that pull the body with ``receive()`` only as
fast as the pipeline consumes it and stream the response themselves; Quart would buffer the
whole body and quart-trio would cut responses after ``RESPONSE_TIMEOUT``. Everything else
(metadata) is a Quart blueprint.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_to_bytes

from quart import Response
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from streamd import request_ids
from streamd.auth import Authenticator, make_authenticator
from streamd.http import (
    cache,
    data,
    extensions,
    images,
    imports,
    info,
    locations,
    members,
    metadefs,
    metrics,
    openapi,
    schemas,
    staging,
    stores,
    tasks,
    versions,
)
from streamd.http.context import AUTH_KEY, RUNTIME_KEY, authenticate_request
from streamd.http.errors import describe, error_body
from streamd.http.rawasgi import ASGIApp, Receive, Scope, Send
from streamd.service.runtime import Runtime

# The raw ASGI data routes, tried in order before the Quart app: (path pattern, handler
# factory). A handler authenticates its requests with the authenticator it is built with.
DATA_ROUTES: tuple[tuple[re.Pattern[str], Callable[[Runtime, Authenticator], ASGIApp]], ...] = (
    (data.FILE_PATH, data.file_handler),
    (staging.STAGE_PATH, staging.stage_handler),
)


# The first segments of the v2 API's paths. A client that was given the unversioned endpoint
# and no catalog (openstack --os-token T --os-endpoint http://host:9292: keystoneauth's
# token_endpoint plugin returns that endpoint as is, whatever version discovery found) asks
# for /images; Glance's version negotiation answers such a path with the version list (300),
# streamd serves it as /v2/images.
UNVERSIONED = frozenset({"images", "schemas", "info", "tasks", "metadefs", "cache"})


def _json_error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    response = Response(error_body(status, message), status=status,
                        content_type="application/json")
    for k, v in (headers or {}).items():
        response.headers[k] = v
    return response


def create_quart_app(rt: Runtime, authenticator: Authenticator) -> QuartTrio:
    app = QuartTrio("streamd", static_folder=None)  # no static files: no /static route
    app.extensions[RUNTIME_KEY] = rt
    app.extensions[AUTH_KEY] = authenticator
    app.before_request(authenticate_request)
    app.config["MAX_CONTENT_LENGTH"] = rt.settings.metadata_body_max
    app.config["PROPAGATE_EXCEPTIONS"] = False
    app.config["RESPONSE_TIMEOUT"] = rt.settings.response_timeout  # metadata routes only
    app.json.sort_keys = False  # type: ignore[attr-defined]
    for bp in (versions.bp, schemas.bp, images.bp, members.bp, info.bp, imports.bp, tasks.bp,
               stores.bp, locations.bp, metadefs.bp, cache.bp, openapi.bp, extensions.bp):
        app.register_blueprint(bp)
    if rt.settings.metrics_bind is None:  # else off, or on an address of its own
        app.register_blueprint(metrics.bp)

    @app.errorhandler(HTTPException)
    async def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        message = exc.description or exc.name
        headers = {}
        if status == 405 and getattr(exc, "valid_methods", None):
            headers["Allow"] = ", ".join(exc.valid_methods)  # type: ignore[attr-defined]
        return _json_error(status, message, headers)

    @app.errorhandler(Exception)
    async def _error(exc: Exception) -> Response:
        status, message, headers = describe(exc)
        return _json_error(status, message, headers)

    return app


def create_app(rt: Runtime, authenticator: Authenticator | None = None) -> ASGIApp:
    """The whole ASGI app: data routes first, then the Quart metadata app.

    ``authenticator`` defaults to the one the settings name (``noauth`` or ``tokens``;
    ``keystone`` needs ``streamd.auth.open_authenticator``).
    """
    if authenticator is None:
        authenticator = make_authenticator(rt.settings)
    quart_app = create_quart_app(rt, authenticator)
    data_routes = [(pattern, factory(rt, authenticator)) for pattern, factory in DATA_ROUTES]

    async def dispatch(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await quart_app(scope, receive, send)
            return
        problem = _url_problem(scope)
        if problem is not None:
            await _send_error(send, 400, problem, close=_has_body(scope))
            return
        path = scope["path"]
        for pattern, handler in data_routes:
            if pattern.fullmatch(path):
                await handler(scope, *_close_if_body_unread(scope, receive, send))
                return
        replay = await _read_metadata_body(receive, send, rt.settings.metadata_body_max)
        if replay is not None:
            await quart_app(scope, replay, send)

    metrics.watch_runtime(rt)
    return with_request_id(_versioned(metrics.instrument(dispatch)))


def _versioned(app: ASGIApp) -> ASGIApp:
    """``/images…`` served as ``/v2/images…`` (see ``UNVERSIONED``)."""

    async def versioned(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].split("/", 2)[1] in UNVERSIONED:
            scope = {**scope, "path": "/v2" + scope["path"],
                     "raw_path": b"/v2" + scope.get("raw_path", b"")}
        await app(scope, receive, send)

    return versioned


def with_request_id(app: ASGIApp) -> ASGIApp:
    """Every answer, data routes and errors included, carries ``x-openstack-request-id``.

    The id (the request's own valid ``X-Openstack-Request-Id``, else a new one) is the current
    request id (``streamd.request_ids``) while the request is served: in the logs, and on the
    tasks it creates."""
    header = request_ids.HEADER.encode()

    async def app_with_id(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        incoming = None
        for name, value in scope["headers"]:
            if name == header:
                incoming = value.decode("latin-1")
        request_id = request_ids.request_id_for(incoming)
        id_header = (header, request_id.encode())

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [
                    *(h for h in message.get("headers", ()) if h[0].lower() != header),
                    id_header]}
            await send(message)

        with request_ids.serving(request_id):
            await app(scope, receive, send_with_id)

    return app_with_id


def _url_problem(scope: Scope) -> str | None:
    """Why the request's path or query string cannot be taken as text, or None.

    Servers decode percent-escapes leniently (invalid UTF-8 becomes U+FFFD, so ``%ff`` in a
    tag would be stored as something the client never sent); and NUL, which PostgreSQL
    refuses in text, is refused here for every database alike.
    """
    raw_path = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
    for part, raw in (("path", raw_path.partition(b"?")[0]),
                      ("query string", scope.get("query_string", b"").replace(b"+", b" "))):
        try:
            text = unquote_to_bytes(raw).decode("utf-8")
        except UnicodeDecodeError as e:
            return (f"The URL's {part} is not UTF-8 once percent-decoded (byte "
                    f"{e.object[e.start]:#04x} at {e.start}): percent-encode UTF-8 text.")
        if "\x00" in text:
            return f"The URL's {part} holds a NUL character (%00), which no name may contain."
    return None


def _has_body(scope: dict[str, Any]) -> bool:
    for name, value in scope["headers"]:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return True
    return False


def _close_if_body_unread(scope: dict[str, Any], receive: Any, send: Any) -> tuple[Any, Any]:
    """Wrap ``receive``/``send``: a response sent before the body was read closes the connection.

    HTTP/1.1 cannot start the next request on a connection whose previous body is still
    in flight; without ``Connection: close`` the client's next request on it hangs. A data
    route that refuses an upload early (409, 413, 415, 503) must not read gigabytes first.
    """
    body_done = not _has_body(scope)

    async def tracking_receive() -> dict[str, Any]:
        nonlocal body_done
        message = await receive()
        if message["type"] == "http.disconnect" or not message.get("more_body", False):
            body_done = True
        return message

    async def closing_send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start" and not body_done:
            message = {**message, "headers": [*message.get("headers", ()),
                                              (b"connection", b"close")]}
        await send(message)

    return tracking_receive, closing_send


async def _read_metadata_body(receive: Any, send: Any, limit: int) -> Any | None:
    """Read a metadata request's whole (small) body before routing, and replay it to Quart.

    Routing answers some requests (404, 405, 415) without reading their body; read first, so
    the connection is always ready for the next request. Past ``limit`` bytes
    (``metadata_body_max``) the answer is 413 and the connection is closed. Returns None
    when the request is over.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body = message.get("body", b"")
        size += len(body)
        if size > limit:
            await _send_error(send, 413, f"a metadata request body may be at most {limit} "
                              "bytes (metadata_body_max)", close=True)
            return None
        chunks.append(body)
        if not message.get("more_body", False):
            break
    pending = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

    async def replay() -> dict[str, Any]:
        return pending.pop() if pending else await receive()

    return replay


async def _send_error(send: Any, status: int, message: str, *, close: bool = False) -> None:
    body = error_body(status, message)
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})

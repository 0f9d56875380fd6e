"""The ASGI application: a dispatcher in front of the Quart app.

Data routes (image bytes) are raw ASGI handlers that pull the body with ``receive()`` only as
fast as the pipeline consumes it and stream the response themselves; Quart would buffer the
whole body and quart-trio would cut responses after ``RESPONSE_TIMEOUT``. Everything else
(metadata) is a Quart blueprint.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from quart import Response
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from streamd.http import images, schemas, versions
from streamd.http.context import RUNTIME_KEY
from streamd.http.errors import describe, error_body
from streamd.service.runtime import Runtime

ASGIApp = Callable[[dict[str, Any], Callable[..., Awaitable[Any]], Callable[..., Awaitable[Any]]],
                   Awaitable[None]]

# (pattern, handler factory) for raw ASGI data routes; filled in by the data module
DATA_ROUTES: list[tuple[re.Pattern[str], Callable[[Runtime], ASGIApp]]] = []


def _json_error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    response = Response(error_body(status, message), status=status,
                        content_type="application/json")
    for k, v in (headers or {}).items():
        response.headers[k] = v
    return response


def create_quart_app(rt: Runtime) -> QuartTrio:
    app = QuartTrio("streamd")
    app.extensions[RUNTIME_KEY] = rt
    app.config["MAX_CONTENT_LENGTH"] = 16 * 1024 * 1024  # metadata bodies only; data is raw ASGI
    app.config["PROPAGATE_EXCEPTIONS"] = False
    app.config["RESPONSE_TIMEOUT"] = rt.settings.response_timeout  # metadata routes only
    app.json.sort_keys = False  # type: ignore[attr-defined]
    for bp in (versions.bp, schemas.bp, images.bp):
        app.register_blueprint(bp)

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


def create_app(rt: Runtime) -> ASGIApp:
    """The whole ASGI app: data routes first, then the Quart metadata app."""
    quart_app = create_quart_app(rt)
    try:
        import streamd.http.data  # noqa: F401  (registers DATA_ROUTES)
    except ModuleNotFoundError as e:
        if e.name != "streamd.http.data":
            raise
    data_routes = [(pattern, factory(rt)) for pattern, factory in DATA_ROUTES]

    async def dispatch(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            for pattern, handler in data_routes:
                if pattern.fullmatch(path):
                    await handler(scope, receive, send)
                    return
        await quart_app(scope, receive, send)

    return dispatch

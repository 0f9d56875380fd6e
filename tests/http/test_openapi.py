"""/openapi.json: a valid OpenAPI 3.1 document whose operations are exactly the app's routes.

The routes are read from the app itself (Quart's url_map, and the raw-ASGI data routes of
``streamd.http.app.DATA_ROUTES`` whose methods a live server is asked for), so a route added
or removed without its operation fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import trio
from openapi_spec_validator import OpenAPIV31SpecValidator

from streamd.auth import make_authenticator
from streamd.config import Settings
from streamd.http.app import DATA_ROUTES, create_quart_app
from streamd.http.openapi import OPENAPI_PATH, document
from streamd.service.runtime import open_runtime
from tests.servers import ADMIN_HEADERS, ServerProcess

AUTOMATIC = {"HEAD", "OPTIONS"}  # Quart adds them to every GET route / every route
PROBED = ("GET", "HEAD", "PUT", "POST", "PATCH", "DELETE")
_ARGUMENT = re.compile(r"<(?:(\w+)(?:\(([^)]*)\))?:)?(\w+)>")
_GROUP = re.compile(r"\(\?P<(\w+)>[^)]*\)")


def documented() -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in document()["paths"].items()
            for method in item if method != "parameters"}


def _templates(rule: str) -> list[str]:
    """A werkzeug rule as OpenAPI path templates (``any(a, b)`` is one path per choice)."""
    match = _ARGUMENT.search(rule)
    if match is None:
        return [rule]
    converter, arguments, name = match.groups()
    head, tail = rule[:match.start()], rule[match.end():]
    if converter == "any":
        choices = [c.strip() for c in arguments.split(",")]
    else:
        choices = [f"{{{name}}}"]
    return [head + choice + rest for choice in choices for rest in _templates(tail)]


async def quart_routes(tmp_path: Path) -> set[tuple[str, str]]:
    settings = Settings(data_dir=tmp_path / "data")
    async with trio.open_nursery() as nursery, open_runtime(settings, nursery) as rt:
        app = create_quart_app(rt, make_authenticator(settings))
        routes = {(method, path) for rule in app.url_map.iter_rules()
                  for method in rule.methods - AUTOMATIC for path in _templates(rule.rule)}
        nursery.cancel_scope.cancel()
    return routes


def data_routes(server: ServerProcess) -> set[tuple[str, str]]:
    """The data routes' methods, as the server answers them: 405 for a method it lacks."""
    routes = set()
    for pattern, _ in DATA_ROUTES:
        template = _GROUP.sub(lambda m: f"{{{m.group(1)}}}", pattern.pattern)
        url = server.url + template.replace("{image_id}", "00000000-0000-0000-0000-000000000000")
        for method in PROBED:
            response = httpx.request(method, url, headers=ADMIN_HEADERS, timeout=10)
            if response.status_code != 405:
                routes.add((method, template))
    return routes


async def test_every_route_has_its_operation_and_no_more(tmp_path: Path,
                                                         server: ServerProcess) -> None:
    routes = await quart_routes(tmp_path) | data_routes(server)
    assert ("PUT", "/v2/images/{image_id}/file") in routes  # the probe sees the data routes
    assert ("DELETE", "/v2/metadefs/namespaces/{namespace}/tags") in routes  # any(…) expanded
    assert sorted(routes - documented()) == [], "routes without an operation in openapi.py"
    assert sorted(documented() - routes) == [], "operations of routes the app does not have"


def test_document_is_valid_openapi_3_1() -> None:
    errors = [e.message for e in OpenAPIV31SpecValidator(document()).iter_errors()]
    assert errors == []


def test_every_operation_documents_the_json_errors() -> None:
    for path, item in document()["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            for status in ("4XX", "5XX"):
                content = operation["responses"][status]["content"]
                assert content == {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Error"}}}, (method, path)


def test_glance_schemas_are_embedded_with_their_references(server: ServerProcess) -> None:
    """The served Glance schemas are the components, their references rewritten to resolve."""
    components = document()["components"]["schemas"]
    served = httpx.get(server.url + "/v2/schemas/image", timeout=10).json()
    assert components["Image"] == served
    namespace = components["MetadefNamespace"]
    assert '"#/definitions/' not in str(namespace)
    assert "#/components/schemas/MetadefNamespace/definitions/property" in str(namespace)


def test_served_at_openapi_json(server: ServerProcess) -> None:
    response = httpx.get(server.url + OPENAPI_PATH, timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == document()
    unversioned = httpx.get(server.url + "/images", headers=ADMIN_HEADERS, timeout=10)
    assert unversioned.status_code == 200  # the description's promise of paths without /v2

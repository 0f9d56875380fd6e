"""Bad metadefs requests get a JSON 4xx that says what was wrong, never a 500, on every
database (names past their columns are refused before PostgreSQL or MariaDB would fail)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.registry.conftest import BACKENDS, fresh_database
from tests.servers import ADMIN_HEADERS, ServerProcess

NS = "/v2/metadefs/namespaces"
LONG = "x" * 81


@pytest.fixture(scope="module", params=BACKENDS)
def client(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[httpx.Client]:
    tmp = tmp_path_factory.mktemp(f"metadefs-{request.param}")
    with fresh_database(request.param, Path(tmp)) as url:
        upgraded = subprocess.run([sys.executable, "-m", "streamd", "db", "upgrade",
                                   "--database-url", url], capture_output=True, text=True)
        assert upgraded.returncode == 0, upgraded.stderr
        with ServerProcess(data_dir=tmp / "data", args=("--database-url", url)) as srv, \
                httpx.Client(base_url=srv.url, headers=ADMIN_HEADERS) as http:
            created = http.post(NS, json={"namespace": "Bad::Input", "visibility": "public"})
            assert created.status_code == 201, created.text
            yield http


def namespace(**contents: Any) -> dict[str, Any]:
    return {"namespace": "Bad::New", **contents}


CASES = [
    ("POST", NS, b"{not json", 400, "Malformed JSON"),
    ("POST", NS, b"", 400, "Body expected"),
    ("POST", NS, [1, 2], 400, "JSON object"),
    ("POST", NS, namespace(namespace=LONG), 400, "is too long"),
    ("POST", NS, namespace(properties={LONG: {"title": "T", "type": "string"}}), 400,
     "longer than 80"),
    ("POST", NS, namespace(objects=[{"name": LONG}]), 400, "longer than 80"),
    ("POST", NS, namespace(objects=[{"description": "no name"}]), 400, "needs a 'name'"),
    ("POST", NS, namespace(tags=[{"name": LONG}]), 400, "longer than 80"),
    ("POST", NS, namespace(resource_type_associations=[{"name": "T", "prefix": LONG}]), 400,
     "longer than 80"),
    ("POST", NS, namespace(resource_type_associations=[{"prefix": "p_"}]), 400,
     "needs a 'name'"),
    ("POST", NS, namespace(properties={"p": {"title": "P", "type": "string", "colour": 1}}),
     400, "Unknown attribute"),
    ("POST", NS, namespace(properties={"p": {"title": "P", "type": "array",
                                             "items": {"type": "string", "x": 1}}}),
     400, "items.x"),
    ("POST", NS, namespace(visibility=None), 400, "does not match schema"),
    ("POST", NS, namespace(created_at="2020-01-01T00:00:00Z"), 403, "read-only"),
    ("PUT", f"{NS}/Bad::Input", {"display_name": "no namespace"}, 400, "required"),
    ("GET", f"{NS}?limit=x", None, 400, "integer"),
    ("GET", f"{NS}?sort_key=colour", None, 400, "sort key"),
    ("GET", f"{NS}?marker=Bad::None", None, 404, "not found"),
    ("POST", f"{NS}/Bad::Input/tags/{LONG}", None, 400, "80 characters"),
    ("POST", f"{NS}/Bad::Input/tags", {"tags": [{"name": ""}]}, 400, "80 characters"),
    ("POST", f"{NS}/Bad::Input/tags", {"tags": "one"}, 400, "does not match schema"),
    ("PUT", f"{NS}/Bad::Input/tags/none", {"name": "x"}, 404, "tag none"),
    ("POST", f"{NS}/Bad::Input/properties", {"name": LONG, "title": "T", "type": "string"},
     400, "is too long"),
    ("POST", f"{NS}/Bad::Input/objects", {"name": "o", "required": "a"}, 400,
     "does not match schema"),
    ("POST", f"{NS}/Bad::Input/resource_types", {"name": LONG}, 400, "is too long"),
    ("GET", f"{NS}/Bad::Input/properties/none?resource_type=Nothing", None, 404, "Nothing"),
    ("DELETE", f"{NS}/Bad::Input/resource_types/Nothing", None, 404, "Nothing"),
    ("DELETE", f"{NS}/Bad::Input/things", None, 404, ""),
    ("GET", "/v2/schemas/metadefs/thing", None, 404, "metadefs/namespace"),
    # property definitions must be usable JSON Schemas (Glance stores these two)
    ("POST", f"{NS}/Bad::Input/properties",
     {"name": "re", "title": "R", "type": "string", "pattern": "["}, 400,
     "not a regular expression"),
    ("POST", NS, namespace(objects=[{"name": "o", "properties": {
        "e": {"title": "E", "type": "string", "enum": []}}}]), 400, "not a valid JSON Schema"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "says"), CASES,
                         ids=[f"{c[0]} {c[1][len(NS):] or c[1]} {c[3]}" for c in CASES])
def test_bad_requests(client: httpx.Client, method: str, path: str, body: Any, status: int,
                      says: str) -> None:
    if isinstance(body, bytes):
        response = client.request(method, path, content=body,
                                  headers={"Content-Type": "application/json"})
    else:
        response = client.request(method, path, json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == status and says in error["message"], error
    assert client.get(f"{NS}/Bad::New").status_code == 404  # nothing was made


def test_repeated_enum_values_are_let_through(client: httpx.Client) -> None:
    """Glance's own definition files repeat some enum values; they load and are kept."""
    prop = {"name": "edition", "title": "E", "type": "string", "enum": ["a", "b", "a"]}
    created = client.post(f"{NS}/Bad::Input/properties", json=prop)
    assert created.status_code == 201 and created.json()["enum"] == ["a", "b", "a"]


def test_case_matters_in_names(client: httpx.Client) -> None:
    """Names compare exactly on every database (MariaDB's default collation would not)."""
    tags = f"{NS}/Bad::Input/tags"
    assert client.post(tags, json={"tags": [{"name": "Fast"}, {"name": "fast"}]}
                       ).status_code == 201
    assert sorted(t["name"] for t in client.get(tags).json()["tags"]) == ["Fast", "fast"]
    assert client.get(f"{NS}/bad::input").status_code == 404

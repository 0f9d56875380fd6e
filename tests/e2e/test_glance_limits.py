"""Glance's per-image limits, with Glance's defaults and words (asked of Glance 33):
``image_property_quota`` 128 and ``image_tag_quota`` 128 -> 413 "The limit has been exceeded
on the number of allowed image properties. Attempted: 129, Maximum: 128", on create, PATCH
and ``PUT …/tags/{tag}`` alike; and a bound of streamd's own on one property value
(``image_property_value_max``, 65,535 bytes: what Glance's TEXT column holds on MySQL;
Glance itself stored a 10 MB value). The location quota is tested with the location ops
(tests/e2e/test_http_locations.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.errors import error_of
from tests.servers import ServerProcess

OWNER = {"X-Project-Id": "p-limits", "X-User-Id": "u1", "X-Roles": "member,reader"}
PATCH = {"Content-Type": "application/openstack-images-v2.1-json-patch"}


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers=OWNER, timeout=30) as c:
        yield c


def _create(client: httpx.Client, **fields: Any) -> httpx.Response:
    return client.post("/v2/images", json={"name": f"limits-{uuid.uuid4().hex[:8]}", **fields})


def _refused(r: httpx.Response, *words: str) -> None:
    assert r.status_code == 413, r.text
    message = error_of(r)["message"]
    for word in words:
        assert word in message, (word, message)


def test_properties_past_the_quota(client: httpx.Client) -> None:
    _refused(_create(client, **{f"k{i}": "v" for i in range(129)}),
             "number of allowed image properties. Attempted: 129, Maximum: 128",
             "image_property_quota")
    r = _create(client, **{f"k{i}": "v" for i in range(128)})
    assert r.status_code == 201, r.text
    image_id = r.json()["id"]
    _refused(client.patch(f"/v2/images/{image_id}", headers=PATCH,
                          json=[{"op": "add", "path": "/extra", "value": "v"}]),
             "Attempted: 129, Maximum: 128")
    # changing one, or removing one and adding another, stays within it
    r = client.patch(f"/v2/images/{image_id}", headers=PATCH, json=[
        {"op": "replace", "path": "/k0", "value": "w"}, {"op": "remove", "path": "/k1"},
        {"op": "add", "path": "/extra", "value": "v"}])
    assert r.status_code == 200, r.text


def test_tags_past_the_quota(client: httpx.Client) -> None:
    _refused(_create(client, tags=[f"t{i}" for i in range(129)]),
             "number of allowed image tags. Attempted: 129, Maximum: 128", "image_tag_quota")
    r = _create(client, tags=[f"t{i}" for i in range(128)])
    assert r.status_code == 201, r.text
    image_id = r.json()["id"]
    _refused(client.put(f"/v2/images/{image_id}/tags/extra"),
             f"Image tag limit exceeded for image {image_id}", "Attempted: 129, Maximum: 128")
    assert client.put(f"/v2/images/{image_id}/tags/t1").status_code == 204  # already there
    _refused(client.patch(f"/v2/images/{image_id}", headers=PATCH,
                          json=[{"op": "replace", "path": "/tags",
                                 "value": [f"t{i}" for i in range(128)] + ["extra"]}]),
             "Attempted: 129")
    assert len(client.get(f"/v2/images/{image_id}").json()["tags"]) == 128


def test_one_value_past_its_bound(client: httpx.Client) -> None:
    _refused(_create(client, big="x" * 65536), "'big'", "65536 bytes", "65535",
             "image_property_value_max")
    _refused(_create(client, big="é" * 32768), "65536 bytes")  # UTF-8 bytes, not characters
    r = _create(client, big="x" * 65535)
    assert r.status_code == 201, r.text
    _refused(client.patch(f"/v2/images/{r.json()['id']}", headers=PATCH,
                          json=[{"op": "add", "path": "/other", "value": "x" * 70000}]),
             "'other'")


def test_the_metadata_body_bound_is_a_setting(make_server) -> None:  # noqa: ANN001
    srv = make_server(env={"STREAMD_METADATA_BODY_MAX": "4096"})
    with httpx.Client(base_url=srv.url, headers=OWNER, timeout=30) as client:
        _refused(_create(client, note="x" * 5000), "at most 4096 bytes", "metadata_body_max")
        assert _create(client, note="x" * 3000).status_code == 201

"""Sending a glance-direct import to the node that holds the stage: the request replayed
with the caller's identity, the stage host's answer passed on (httpx's MockTransport)."""

from __future__ import annotations

import json

import httpx
import pytest

from streamd.config import Settings
from streamd.context import RequestContext, identity_of
from streamd.service.stage_host import (
    STAGE_HOST,
    StageHostError,
    StageHostUnavailable,
    forward_import,
    stage_marks,
    staged_elsewhere,
)
from tests.service.records import record

HEADERS = {"X-Auth-Token": "t0k3n", "X-Project-Id": "p1", "X-User-Id": "u1",
           "X-Roles": "member", "Accept": "application/json"}
CTX = RequestContext(project_id="p1", user_id="u1", roles=frozenset({"member"}),
                     identity_headers=identity_of(HEADERS.get))
BODY = {"method": {"name": "glance-direct"}}


def client(handler: httpx.MockTransport) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=handler)


def test_identity_headers_are_kept_out_of_sight() -> None:
    assert dict(CTX.identity_headers) == {k: v for k, v in HEADERS.items() if k != "Accept"}
    assert "t0k3n" not in repr(CTX)
    assert CTX == RequestContext(project_id="p1", user_id="u1", roles=frozenset({"member"}))


def test_staged_elsewhere_compares_with_this_nodes_url_and_id() -> None:
    a = Settings(bind="127.0.0.1:9292", worker_self_reference_url="http://a:9292",
                 node_id="node-a")
    b = Settings(bind="127.0.0.1:9292", worker_self_reference_url="http://b:9292",
                 node_id="node-b")
    image = record(status="uploading", properties=stage_marks(a))
    assert staged_elsewhere(a, image) is None
    assert staged_elsewhere(b, image) == "http://a:9292"
    assert staged_elsewhere(b, record(properties={})) is None
    # node a restarted at another address: its stages are still its own
    moved = Settings(worker_self_reference_url="http://a2:9393", node_id="node-a")
    assert staged_elsewhere(moved, image) is None
    # Glance's property alone (no node id), with a trailing slash
    assert staged_elsewhere(a, record(properties={STAGE_HOST: "http://a:9292/"})) is None


async def test_the_request_is_replayed_with_the_callers_identity() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202)

    async with client(httpx.MockTransport(answer)) as c:
        await forward_import(CTX, "http://a:9292", "img-1", BODY, store_header="swift1",
                             client=c)
    (request,) = seen
    assert (request.method, str(request.url)) == ("POST",
                                                  "http://a:9292/v2/images/img-1/import")
    assert json.loads(request.content) == BODY
    for name in ("X-Auth-Token", "X-Project-Id", "X-User-Id", "X-Roles"):
        assert request.headers[name] == HEADERS[name]
    assert request.headers["X-Image-Meta-Store"] == "swift1"


async def test_the_stage_hosts_error_is_passed_on() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(409, json={"error": {"message": "Image needs to be staged",
                                                   "code": 409, "title": "Conflict"}})

    async with client(httpx.MockTransport(answer)) as c:
        with pytest.raises(StageHostError) as caught:
            await forward_import(CTX, "http://a:9292", "img-1", BODY, store_header=None,
                                 client=c)
    assert (caught.value.status, caught.value.message) == (409, "Image needs to be staged")


async def test_an_unreachable_stage_host_is_504() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with client(httpx.MockTransport(answer)) as c:
        with pytest.raises(StageHostUnavailable) as caught:
            await forward_import(CTX, "http://a:9292", "img-1", BODY, store_header=None,
                                 client=c)
    assert caught.value.status == 504 and "http://a:9292" in caught.value.message

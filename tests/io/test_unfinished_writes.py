"""What a write killed with its process leaves in an object store, found and removed by key
(``discard_unfinished``), for the node that repairs the upload: Swift segments that no
manifest names, S3 multipart uploads. The object at the key, and other keys, stay whole.

The kill is played by writing what a killed write leaves (segments, an upload started and
never completed) straight to the real server; tests/e2e/test_two_nodes.py kills a node.
"""

from __future__ import annotations

import random
import uuid

import boto3
import httpx
import pytest
from botocore.config import Config

from streamd.io import can_sweep
from streamd.units import MiB
from tests.io.test_object_stores import feed, read_all, s3_store, swift_store
from tests.objectstores import SWIFT_KEY, SWIFT_USER, SwiftServer

pytestmark = pytest.mark.slow


@pytest.fixture(params=["swift-s3api", "moto"])
def s3_endpoint(request: pytest.FixtureRequest) -> tuple[str, str, str]:
    """(endpoint, access key, secret key) of a real S3 server."""
    if request.param == "moto":
        return request.getfixturevalue("moto_server").endpoint, "testing", "testing"
    return request.getfixturevalue("swift_server").endpoint, SWIFT_USER, SWIFT_KEY


async def test_swift_removes_the_segments_no_manifest_names(swift_server: SwiftServer) -> None:
    store = swift_store(swift_server)
    assert can_sweep(store)
    data = random.Random(3).randbytes(2 * MiB + 10)
    stored = await store.write(feed(data), key="img", size=len(data))  # 3 segments
    storage_url, token = swift_server.token()
    killed = [f"img/{uuid.uuid4().hex[:16]}/{n:08d}" for n in range(2)]
    others = [f"img2/{uuid.uuid4().hex[:16]}/00000000"]
    async with httpx.AsyncClient() as client:
        for name in killed + others:  # what two killed writes left
            r = await client.put(f"{storage_url}/{store.segments}/{name}",
                                 content=b"s" * 100, headers={"X-Auth-Token": token})
            assert r.status_code == 201
    assert await store.discard_unfinished("img") == 2
    names = await store.list_names()
    assert not any(name.endswith(tuple(killed)) for name in names)
    assert sum(n.startswith(f"{store.segments}/img/") for n in names) == 3  # the object's
    assert f"{store.segments}/{others[0]}" in names  # another image's
    assert await read_all(store, stored.location) == data
    assert await store.discard_unfinished("img") == 0
    assert await store.discard_unfinished("img2") == 1  # no object at all: every segment
    assert await store.discard_unfinished("nothing-here") == 0
    await store.delete(stored.location)
    await store.aclose()


async def test_s3_aborts_the_multipart_uploads_of_the_key(
    s3_endpoint: tuple[str, str, str],
) -> None:
    endpoint, access, secret = s3_endpoint
    store = s3_store(endpoint, access, secret)
    assert can_sweep(store)
    await store.write(feed(b"x" * 10), key="img")  # makes the bucket; the object stays
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=access,
                          aws_secret_access_key=secret, region_name="us-east-1",
                          config=Config(s3={"addressing_style": "path"}))
    client.create_multipart_upload(Bucket=store.bucket, Key="img")
    client.create_multipart_upload(Bucket=store.bucket, Key="img-2")
    assert await store.discard_unfinished("img") == 1
    assert sorted(await store.list_names()) == ["img", "img-2 (multipart upload)"]
    assert await store.discard_unfinished("img") == 0
    await store.aclose()

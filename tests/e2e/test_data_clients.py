"""Real clients move real images: python-glanceclient, openstacksdk and curl, end to end.

The two 1 GiB cases run in the default suite (marked ``slow``): one pseudo-random through
glanceclient, one sparse file through openstacksdk, which also shows that zeros cost no disk.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import glanceclient
import openstack
import pytest

from tests.data_client import MEMBER, create_image, file_url, images_dir, pseudo_random, show
from tests.servers import ServerProcess

GiB = 1024 * 1024 * 1024


class GeneratedFile:
    """A read-only file of ``size`` pseudo-random bytes made on the fly, hashed as it is read."""

    def __init__(self, size: int) -> None:
        self._blocks = pseudo_random(size)
        self._block = memoryview(b"")
        self.md5 = hashlib.md5()
        self.sha512 = hashlib.sha512()

    def read(self, n: int = -1) -> bytes:
        if not self._block:
            block = next(self._blocks, b"")
            self.md5.update(block)
            self.sha512.update(block)
            self._block = memoryview(block)
        n = len(self._block) if n < 0 else n
        out, self._block = self._block[:n], self._block[n:]
        return bytes(out)


def glance_client(server: ServerProcess) -> Any:
    client = glanceclient.Client(endpoint=server.url + "/v2", token="x")
    client.http_client.session.headers.update(MEMBER)
    return client


@pytest.mark.slow
def test_glanceclient_uploads_and_downloads_1gib(server: ServerProcess) -> None:
    glance = glance_client(server)
    image = glance.images.create(name="gc-1gib", disk_format="raw", container_format="bare")
    source = GeneratedFile(GiB)
    glance.images.upload(image.id, source)  # chunked: glanceclient sends no length
    shown = glance.images.get(image.id)
    assert shown.status == "active"
    assert shown.size == GiB
    assert shown.checksum == source.md5.hexdigest()
    assert shown.os_hash_value == source.sha512.hexdigest()
    # glanceclient checks os_hash_value (sha512) itself while the body streams
    md5 = hashlib.md5()
    size = 0
    for chunk in glance.images.data(image.id):
        md5.update(chunk)
        size += len(chunk)
    assert (size, md5.hexdigest()) == (GiB, source.md5.hexdigest())
    glance.images.delete(image.id)
    glance.http_client.session.close()  # an idle keep-alive connection delays server stop
    assert not any(image.id in p.name for p in images_dir(server.data_dir).iterdir())


@pytest.mark.slow
def test_openstacksdk_sparse_1gib_costs_no_disk(server: ServerProcess, tmp_path: Path) -> None:
    sparse = tmp_path / "sparse.raw"
    with open(sparse, "wb") as f:
        f.truncate(GiB)
    zeros_md5 = hashlib.md5()
    zeros_sha512 = hashlib.sha512()
    block = bytes(1024 * 1024)
    for _ in range(1024):
        zeros_md5.update(block)
        zeros_sha512.update(block)
    conn = openstack.connect(auth_type="admin_token",
                             auth={"endpoint": server.url + "/v2", "token": "x"})
    created = conn.image.create_image(name="sdk-sparse", filename=str(sparse),
                                      disk_format="raw", container_format="bare")
    image = conn.image.get_image(created.id)
    assert image.status == "active"
    assert image.size == GiB
    assert image.checksum == zeros_md5.hexdigest()
    assert (image.hash_algo, image.hash_value) == ("sha512", zeros_sha512.hexdigest())
    stored = os.stat(images_dir(server.data_dir) / image.id)
    assert stored.st_size == GiB
    assert stored.st_blocks * 512 < 1024 * 1024  # ~0 blocks: the zeros were never written
    response = conn.image.download_image(image, stream=True)
    sha512 = hashlib.sha512()
    size = 0
    for chunk in response.iter_content(1024 * 1024):
        sha512.update(chunk)
        size += len(chunk)
    assert (size, sha512.hexdigest()) == (GiB, image.hash_value)
    conn.image.delete_image(image)
    conn.close()


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_curl_upload_and_ranges(server: ServerProcess, tmp_path: Path) -> None:
    data = random.Random("curl").randbytes(3 * 1024 * 1024 + 7)
    src = tmp_path / "image.raw"
    src.write_bytes(data)
    image_id = create_image(server)
    url = file_url(server, image_id)
    identity = [arg for k, v in MEMBER.items() for arg in ("-H", f"{k}: {v}")]

    def curl(*args: str) -> str:
        done = subprocess.run(["curl", "-sS", "-w", "%{http_code}", *identity, *args, url],
                              capture_output=True, check=True, timeout=60)
        return done.stdout.decode()

    assert curl("-T", str(src), "-H", "Content-Type: application/octet-stream",
                "-o", os.devnull) == "204"
    assert show(server, image_id)["checksum"] == hashlib.md5(data).hexdigest()
    out = tmp_path / "out"
    assert curl("-o", str(out)) == "200"
    assert out.read_bytes() == data
    for first, last in ((0, 0), (1000, 1048576 + 10), (len(data) - 5, len(data) - 1)):
        assert curl("-r", f"{first}-{last}", "-o", str(out)) == "206"
        assert out.read_bytes() == data[first : last + 1]

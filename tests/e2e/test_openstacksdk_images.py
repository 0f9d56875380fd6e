"""openstacksdk against a real streamd, with no Keystone: the ``admin_token`` auth plugin
sends a fixed token to a fixed endpoint, which is how a cloud without an identity service
(or a test) points the SDK at an image service."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import openstack
import pytest

from tests.servers import ServerProcess


@pytest.fixture(scope="module")
def conn(server: ServerProcess) -> Iterator[Any]:
    connection = openstack.connect(
        auth_type="admin_token", auth={"endpoint": server.url + "/v2", "token": "x"},
        load_yaml_config=False, load_envvars=False,
    )
    yield connection
    connection.close()


def test_create_find_list_update_delete(conn: Any) -> None:
    name = f"sdk-{uuid.uuid4().hex[:10]}"
    image = conn.image.create_image(name=name, allow_duplicates=True, disk_format="qcow2",
                                    container_format="bare", tags=["sdk"],
                                    hw_disk_bus="scsi", meta={"build": "42"})
    try:
        assert image.name == name and image.status == "queued"
        assert image.disk_format == "qcow2" and image.visibility == "shared"
        assert image.hw_disk_bus == "scsi"  # a field the SDK knows
        assert image.properties["build"] == "42"  # one it does not

        assert conn.image.find_image(name).id == image.id
        assert conn.image.find_image(image.id).name == name
        assert [i.id for i in conn.image.images(name=name)] == [image.id]
        assert image.id in {i.id for i in conn.image.images(tag="sdk", sort="created_at:desc")}

        conn.image.update_image(image, name=name + "-2", stage="beta")
        got = conn.image.get_image(image.id)
        assert got.name == name + "-2"
        assert got.properties["stage"] == "beta"

        conn.image.add_tag(image, "extra")
        conn.image.remove_tag(image, "sdk")
        assert conn.image.get_image(image.id).tags == ["extra"]
    finally:
        conn.image.delete_image(image, ignore_missing=True)
    # find_image also looks among hidden images (os_hidden=True) before giving up
    assert conn.image.find_image(name) is None
    assert conn.image.find_image(image.id) is None


def test_paging_through_all_images(conn: Any) -> None:
    tag = f"sdk-page-{uuid.uuid4().hex[:8]}"
    ids = [conn.image.create_image(name=f"{tag}-{i}", allow_duplicates=True, tags=[tag]).id
           for i in range(5)]
    try:
        found = [i.id for i in conn.image.images(tag=tag, limit=2)]
        assert sorted(found) == sorted(ids)
    finally:
        for image_id in ids:
            conn.image.delete_image(image_id, ignore_missing=True)


def test_errors_reach_the_caller(conn: Any) -> None:
    with pytest.raises(openstack.exceptions.NotFoundException, match="No image found"):
        conn.image.get_image(str(uuid.uuid4()))
    with pytest.raises(openstack.exceptions.BadRequestException, match="disk_format"):
        conn.image.create_image(name="bad", allow_duplicates=True, disk_format="floppy")

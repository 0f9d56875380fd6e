"""python-glanceclient's metadefs calls and the ``openstack image metadef …`` commands,
run against a real streamd as users run them.

glanceclient downloads ``/v2/schemas/metadefs/*`` and builds its models from them (warlock),
then validates what it sends and what it gets back with them: these tests cover the
schemas and the shapes of the answers as well as the routes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import glanceclient
import pytest
from glanceclient import exc

from tests.servers import ServerProcess


def client_for(server: ServerProcess, project: str, roles: str) -> Any:
    client = glanceclient.Client("2", endpoint=server.url, token="x")
    client.http_client.session.headers.update(
        {"X-Project-Id": project, "X-User-Id": f"user-of-{project}", "X-Roles": roles})
    return client


@pytest.fixture
def name() -> str:
    return f"Client::{uuid.uuid4().hex[:8]}"


@pytest.fixture
def glance(server: ServerProcess, name: str) -> Iterator[tuple[Any, Any]]:
    admin = client_for(server, "gc-admin", "admin")
    member = client_for(server, "gc-member", "member,reader")
    yield admin, member
    try:
        admin.metadefs_namespace.update(name, namespace=name, protected=False)
        admin.metadefs_namespace.delete(name)
    except exc.HTTPNotFound:
        pass
    for client in (admin, member):
        client.http_client.session.close()


def test_glanceclient_namespaces(glance: tuple[Any, Any], name: str) -> None:
    admin, member = glance
    created = admin.metadefs_namespace.create(
        namespace=name, display_name="Client namespace", visibility="public", protected=True,
        description="made by glanceclient",
        resource_type_associations=[{"name": "Client::Flavor", "prefix": "cl:"}],
        properties={"speed": {"title": "Speed", "type": "integer", "minimum": 1}},
        tags=[{"name": "fast"}])
    assert (created.namespace, created.protected, created.owner) == (name, True, "gc-admin")
    shown = member.metadefs_namespace.get(name)
    assert shown.display_name == "Client namespace"
    assert shown.properties == {"speed": {"title": "Speed", "type": "integer", "minimum": 1}}
    prefixed = admin.metadefs_namespace.get(name, resource_type="Client::Flavor")
    assert list(prefixed.properties) == ["cl:speed"]
    listed = [ns.namespace for ns in member.metadefs_namespace.list(
        filters={"resource_types": ["Client::Flavor"]})]
    assert listed == [name]
    paged = list(admin.metadefs_namespace.list(page_size=1, sort_key="namespace",
                                               sort_dir="asc"))
    assert name in [ns.namespace for ns in paged]
    updated = admin.metadefs_namespace.update(name, description="changed", protected=True,
                                              visibility="public")
    assert (updated.description, updated.display_name) == ("changed", "Client namespace")
    with pytest.raises(exc.HTTPForbidden):
        member.metadefs_namespace.create(namespace=f"{name}-member")
    with pytest.raises(exc.HTTPForbidden):
        member.metadefs_namespace.update(name, description="mine")
    with pytest.raises(exc.HTTPForbidden, match="protected"):
        admin.metadefs_namespace.delete(name)
    with pytest.raises(exc.HTTPConflict):
        admin.metadefs_namespace.create(namespace=name)
    admin.metadefs_namespace.update(name, protected=False)
    admin.metadefs_namespace.delete(name)
    with pytest.raises(exc.HTTPNotFound):
        admin.metadefs_namespace.get(name)


def test_glanceclient_properties_objects_tags(glance: tuple[Any, Any], name: str) -> None:
    admin, member = glance
    admin.metadefs_namespace.create(namespace=name, visibility="public")
    props = admin.metadefs_property
    prop = props.create(name, name="cores", title="Cores", type="integer", minimum=1)
    assert (prop.name, prop.minimum) == ("cores", 1)
    assert [p.name for p in member.metadefs_property.list(name)] == ["cores"]
    assert props.get(name, "cores").title == "Cores"
    assert props.update(name, "cores", title="CPU cores", maximum=64).maximum == 64
    with pytest.raises(exc.HTTPBadRequest):
        admin.http_client.post(f"/v2/metadefs/namespaces/{name}/properties",
                               data={"name": "bad", "title": "B", "type": "integer",
                                     "minimum": "low"})
    props.delete(name, "cores")
    props.create(name, name="a", title="A", type="string")
    props.delete_all(name)
    assert list(props.list(name)) == []

    objects = admin.metadefs_object
    obj = objects.create(name, name="Disk", description="disk", required=["bus"],
                         properties={"bus": {"title": "Bus", "type": "string",
                                             "enum": ["virtio", "scsi"]}})
    assert obj.required == ["bus"]
    assert [o.name for o in objects.list(name)] == ["Disk"]
    assert objects.get(name, "Disk").properties["bus"]["enum"] == ["virtio", "scsi"]
    assert objects.update(name, "Disk", description="changed").description == "changed"
    with pytest.raises(exc.HTTPForbidden):
        member.metadefs_object.delete(name, "Disk")
    objects.delete(name, "Disk")
    objects.create(name, name="Other")
    objects.delete_all(name)
    assert list(objects.list(name)) == []

    tags = admin.metadefs_tag
    assert tags.create(name, "one").name == "one"
    assert [t.name for t in tags.create_multiple(name, tags=["two", "three"])] == [
        "two", "three"]
    # create_multiple(append=True) sends the header as a bool, which glanceclient 4.13's own
    # encode_headers cannot quote (TypeError before any request): send what it means to
    resp, body = admin.http_client.post(f"/v2/metadefs/namespaces/{name}/tags",
                                        headers={"X-Openstack-Append": "True"},
                                        data={"tags": [{"name": "four"}]})
    assert (resp.status_code, body) == (201, {"tags": [{"name": "four"}]})
    assert sorted(t.name for t in tags.list(name)) == ["four", "three", "two"]
    assert tags.get(name, "two").name == "two"
    assert tags.update(name, "two", name="deux").name == "deux"
    with pytest.raises(exc.HTTPConflict):
        tags.create(name, "deux")
    tags.delete(name, "deux")
    tags.delete_all(name)
    assert list(tags.list(name)) == []


def test_glanceclient_resource_types(glance: tuple[Any, Any], name: str) -> None:
    admin, member = glance
    admin.metadefs_namespace.create(namespace=name, visibility="private")
    types = admin.metadefs_resource_type
    made = types.associate(name, name="Client::Volume", prefix="vol_",
                           properties_target="image")
    assert (made.name, made.prefix, made.properties_target) == (
        "Client::Volume", "vol_", "image")
    assert [t.name for t in types.get(name)] == ["Client::Volume"]
    assert "Client::Volume" in [t.name for t in member.metadefs_resource_type.list()]
    with pytest.raises(exc.HTTPNotFound):  # a private namespace of another project
        list(member.metadefs_resource_type.get(name))
    with pytest.raises(exc.HTTPConflict):
        types.associate(name, name="Client::Volume")
    types.deassociate(name, "Client::Volume")
    assert list(types.get(name)) == []
    with pytest.raises(exc.HTTPNotFound):
        types.deassociate(name, "Client::Volume")


# -- the openstack CLI (python-openstackclient, through openstacksdk) ---------------------------


class OpenStack:
    """The ``openstack`` CLI against the server (noauth: an anonymous caller is an admin),
    its commands run in one interpreter (tests/openstack_batch.py); called with a command's
    arguments, its output, parsed when it was asked for as JSON."""

    def __init__(self, server: ServerProcess) -> None:
        self.common = ["--os-auth-type", "admin_token", "--os-token", "x", "--os-endpoint",
                       f"{server.url}/v2", "--os-image-api-version", "2"]
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.openstack_batch"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     cwd=Path(__file__).parent.parent)

    def __call__(self, *args: str) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps([*self.common, *args]) + "\n")
        self.proc.stdin.flush()
        done = json.loads(self.proc.stdout.readline())
        assert done["rc"] == 0, (args, done["stderr"])
        if "json" not in args:
            return done["stdout"]
        return json.loads(done["stdout"])

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.mark.slow
def test_openstack_image_metadef_commands(server: ServerProcess, name: str) -> None:
    cli = OpenStack(server)
    try:
        _metadef_commands(cli, name)
    finally:
        cli.close()


def _metadef_commands(cli: OpenStack, name: str) -> None:
    created = cli("image", "metadef", "namespace", "create", "--display-name",
                        "CLI namespace", "--public", "--protected", name, "-f", "json")
    assert (created["namespace"], created["protected"]) == (name, True)
    assert name in [n["namespace"] for n in cli(
        "image", "metadef", "namespace", "list", "-f", "json")]
    cli("image", "metadef", "namespace", "set", "--display-name", "Renamed",
              "--public", "--unprotected", name)
    shown = cli("image", "metadef", "namespace", "show", name, "-f", "json")
    assert (shown["display_name"], shown["protected"]) == ("Renamed", False)

    prop = cli("image", "metadef", "property", "create", "--name", "cores",
                     "--title", "Cores", "--type", "integer", "--schema", '{"minimum": 1}',
                     name, "-f", "json")
    assert prop["minimum"] == 1
    cli("image", "metadef", "property", "set", "--title", "CPU cores", name,
              "cores")
    assert cli("image", "metadef", "property", "show", name, "cores", "-f",
                     "json")["title"] == "CPU cores"
    assert [p["name"] for p in cli("image", "metadef", "property", "list", name,
                                         "-f", "json")] == ["cores"]
    cli("image", "metadef", "property", "delete", name, "cores")

    cli("image", "metadef", "object", "create", "--namespace", name, "Disk")
    assert [o["name"] for o in cli("image", "metadef", "object", "list", name,
                                         "-f", "json")] == ["Disk"]
    assert cli("image", "metadef", "object", "show", name, "Disk", "-f",
                     "json")["name"] == "Disk"
    cli("image", "metadef", "object", "update", "--name", "Disk2", name, "Disk")
    cli("image", "metadef", "object", "delete", name, "Disk2")

    cli("image", "metadef", "resource", "type", "association", "create",
              "--prefix", "cli_", name, "CLI::Image")
    assert [a["Name"] for a in cli("image", "metadef", "resource", "type",
                                         "association", "list", name, "-f", "json")] == [
        "CLI::Image"]
    assert "CLI::Image" in [t["Name"] for t in cli(
        "image", "metadef", "resource", "type", "list", "-f", "json")]
    cli("image", "metadef", "resource", "type", "association", "delete", name,
              "CLI::Image")

    cli("image", "metadef", "namespace", "set", "--tag", "a", "--tag", "b",
              "--public", name)
    cli("image", "metadef", "namespace", "unset", "--tag", "a", name)
    assert [t["name"] for t in cli("image", "metadef", "namespace", "show", name,
                                         "-f", "json")["tags"]] == ["b"]
    cli("image", "metadef", "namespace", "delete", name)
    names = [n["namespace"] for n in cli("image", "metadef", "namespace", "list",
                                               "-f", "json")]
    assert name not in names

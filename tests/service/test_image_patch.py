"""JSON patches on an image: Glance's restrictions, then a diff into the registry's change."""

from __future__ import annotations

from typing import Any

import pytest

from streamd.context import RequestContext
from streamd.errors import BadRequest, Conflict, Forbidden, StreamdError
from streamd.service.image_patch import PATCH_V20, ImageChanges, apply_patch, parse_patch
from tests.service.records import record

ADMIN = RequestContext(project_id="p1", roles=frozenset({"admin"}))
OWNER = RequestContext(project_id="p1", roles=frozenset({"member"}))


def changes(ops: list[dict[str, Any]], ctx: RequestContext = OWNER, **image: Any) -> ImageChanges:
    return apply_patch(ctx, record(**image), parse_patch(ops))


def test_core_and_custom_changes_are_separated() -> None:
    result = changes([
        {"op": "replace", "path": "/name", "value": "new"},
        {"op": "add", "path": "/min_ram", "value": 512},
        {"op": "add", "path": "/hw_disk_bus", "value": "virtio"},
        {"op": "remove", "path": "/foo"},
    ])
    assert result == ImageChanges(values={"name": "new", "min_ram": 512},
                                  set_properties={"hw_disk_bus": "virtio"},
                                  remove_properties=("foo",), tags=None)


def test_add_on_an_existing_property_replaces_it_and_unchanged_values_are_not_written() -> None:
    assert changes([{"op": "add", "path": "/foo", "value": "baz"}]).set_properties == {
        "foo": "baz"}
    assert changes([{"op": "replace", "path": "/name", "value": "cirros"}]).empty


def test_operations_run_in_order() -> None:
    result = changes([
        {"op": "add", "path": "/x", "value": "1"},
        {"op": "replace", "path": "/x", "value": "2"},
        {"op": "remove", "path": "/x"},
    ])
    assert result.empty


def test_tags_are_replaced_as_a_set_and_pointers_are_unescaped() -> None:
    result = changes([{"op": "replace", "path": "/tags", "value": ["b", "b", "c"]},
                      {"op": "add", "path": "/a~1b", "value": "slash"}])
    assert result.tags == ("b", "c")
    assert result.set_properties == {"a/b": "slash"}


def test_v20_format() -> None:
    ops = parse_patch([{"replace": "/name", "value": "v20"}, {"remove": "/foo"}], PATCH_V20)
    assert apply_patch(OWNER, record(), ops) == ImageChanges(
        values={"name": "v20"}, remove_properties=("foo",))


@pytest.mark.parametrize(("ops", "error", "words"), [
    ({"op": "add"}, BadRequest, ["JSON array"]),
    ([["add"]], BadRequest, ["JSON objects"]),
    ([{"path": "/name"}], BadRequest, ["`op`"]),
    ([{"op": "move", "from": "/a", "path": "/b"}], BadRequest, ["`move`"]),
    ([{"op": "add", "path": "name", "value": "x"}], BadRequest, ['start with "/"']),
    ([{"op": "add", "path": "/foo/bar", "value": "x"}], BadRequest, ["/foo/bar"]),
    ([{"op": "add", "path": "/x"}], BadRequest, ['"value"']),
    ([{"op": "replace", "path": "/status", "value": "active"}], Forbidden, ["'status'",
                                                                            "read-only"]),
    ([{"op": "remove", "path": "/id"}], Forbidden, ["'id'", "read-only"]),
    ([{"op": "add", "path": "/locations/-", "value": {}}], Forbidden, ["reserved"]),
    ([{"op": "add", "path": "/os_glance_import", "value": "x"}], Forbidden, ["reserved"]),
    ([{"op": "remove", "path": "/name"}], Forbidden, ["may not be removed"]),
    ([{"op": "remove", "path": "/nothere"}], Conflict, ["nothere", "does not exist"]),
    ([{"op": "replace", "path": "/nothere", "value": "x"}], Conflict, ["does not exist"]),
    ([{"op": "replace", "path": "/disk_format", "value": "floppy"}], BadRequest,
     ["disk_format", "qcow2"]),
    ([{"op": "replace", "path": "/name", "value": "n" * 256}], BadRequest, ["255"]),
    ([{"op": "add", "path": "/n", "value": 5}], BadRequest, ["string"]),
    ([{"op": "replace", "path": "/min_disk", "value": -1}], BadRequest, ["negative"]),
    ([{"op": "replace", "path": "/owner", "value": "p2"}], Forbidden, ["admin"]),
    ([{"op": "replace", "path": "/visibility", "value": "public"}], Forbidden, ["admin"]),
])
def test_refused_patches(ops: Any, error: type[StreamdError], words: list[str]) -> None:
    with pytest.raises(error) as info:
        apply_patch(OWNER, record(), parse_patch(ops))
    for word in words:
        assert word in info.value.message


def test_admin_may_publish_and_move() -> None:
    result = changes([{"op": "replace", "path": "/visibility", "value": "public"},
                      {"op": "replace", "path": "/owner", "value": "p2"}], ADMIN)
    assert result.values == {"visibility": "public", "owner": "p2"}


@pytest.mark.parametrize(("op", "position"), [
    ({"op": "add", "path": "/locations/-", "value": {"url": "u", "metadata": {}}}, "-"),
    ({"op": "add", "path": "/locations/3", "value": {"url": "u", "metadata": {}}}, "3"),
    ({"op": "remove", "path": "/locations/0"}, "0"),
    ({"op": "replace", "path": "/locations", "value": []}, None),
])
def test_location_ops_are_parsed_for_the_locations_service(
    op: dict[str, Any], position: str | None
) -> None:
    (parsed,) = parse_patch([op])
    assert parsed.on_locations and parsed.position == position
    with pytest.raises(Forbidden, match="reserved"):  # not a field: apply_patch refuses it
        apply_patch(OWNER, record(), [parsed])


@pytest.mark.parametrize("op", [
    {"op": "add", "path": "/locations", "value": {"url": "u", "metadata": {}}},
    {"op": "remove", "path": "/locations"},
    {"op": "replace", "path": "/locations/0", "value": {"url": "u", "metadata": {}}},
    {"op": "add", "path": "/locations/-/url", "value": "u"},
])
def test_location_paths_of_the_wrong_depth_are_400_as_glance(op: dict[str, Any]) -> None:
    with pytest.raises(BadRequest, match="Invalid JSON pointer"):
        parse_patch([op])

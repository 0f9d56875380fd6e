"""The image JSON Glance's clients read, and the listing links that keep a listing's filters."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from streamd.http.image_view import image_view, images_view
from streamd.service.image_schema import IMAGE_PROPERTIES
from streamd.service.listing import Page
from tests.service.records import record


def test_every_core_field_custom_properties_links_and_no_internals() -> None:
    image = record(xxh3="00ff", location="file:///secret/path", store="fs1")
    body = image_view(image)
    for name in ("name", "disk_format", "container_format", "visibility", "size",
                 "virtual_size", "status", "checksum", "protected", "min_ram", "min_disk",
                 "owner", "os_hidden", "os_hash_algo", "os_hash_value", "id", "created_at",
                 "updated_at", "tags", "self", "file", "schema"):
        assert name in body, name
    assert body["size"] is None and body["checksum"] is None
    assert body["foo"] == "bar"
    assert body["created_at"] == "2024-01-31T12:00:00Z"
    assert body["updated_at"] == "2024-01-31T12:30:05Z"
    assert body["self"] == f"/v2/images/{image.id}"
    assert body["file"] == f"/v2/images/{image.id}/file"
    assert body["schema"] == "/v2/schemas/image"
    assert body["tags"] == ["a"]
    for internal in ("xxh3", "location", "store", "locations", "direct_url"):
        assert internal not in body
    assert "file:///secret" not in str(body)
    assert set(body) - {"foo"} <= set(IMAGE_PROPERTIES)


def test_the_stage_host_is_hidden_as_in_glance() -> None:
    body = image_view(record(properties={"os_glance_stage_host": "http://a:9292", "k": "v"}))
    assert "os_glance_stage_host" not in body and body["k"] == "v"


def test_page_links_repeat_the_query_and_move_the_marker() -> None:
    params = [("tag", "a"), ("tag", "b"), ("sort", "name:asc"), ("limit", "2"),
              ("marker", "old")]
    body = images_view(Page([record()], "next-id"), params)
    assert body["schema"] == "/v2/schemas/images"
    first = urlsplit(body["first"])
    assert first.path == "/v2/images"
    assert parse_qsl(first.query) == params[:-1]
    nxt = urlsplit(body["next"])
    assert parse_qsl(nxt.query) == [*params[:-1], ("marker", "next-id")]
    assert len(body["images"]) == 1


def test_last_page_has_no_next_and_bare_first() -> None:
    body = images_view(Page([], None), [])
    assert body == {"images": [], "first": "/v2/images", "schema": "/v2/schemas/images"}

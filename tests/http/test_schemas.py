"""/v2/schemas/image(s): what clients validate against must accept what the server sends."""

from __future__ import annotations

import httpx
import jsonschema

from tests.servers import ADMIN_HEADERS, ServerProcess


def test_image_schema_describes_served_images(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, headers=ADMIN_HEADERS) as client:
        schema = client.get("/v2/schemas/image")
        assert schema.status_code == 200
        assert schema.headers["content-type"] == "application/json"
        image_schema = schema.json()
        assert image_schema["name"] == "image"
        assert image_schema["additionalProperties"] == {"type": "string"}
        assert {link["rel"] for link in image_schema["links"]} == {
            "self", "enclosure", "describedby"}
        props = image_schema["properties"]
        assert "qcow2" in props["disk_format"]["enum"] and None in props["disk_format"]["enum"]
        assert "bare" in props["container_format"]["enum"]
        assert "queued" in props["status"]["enum"] and props["status"]["readOnly"] is True
        for read_only in ("checksum", "size", "os_hash_value", "created_at", "self", "file"):
            assert props[read_only]["readOnly"] is True
        assert "readOnly" not in props["name"]

        created = client.post("/v2/images", json={"name": "schema-check", "extra": "x",
                                                  "tags": ["s"]})
        assert created.status_code == 201
        try:
            jsonschema.Draft4Validator(image_schema).validate(created.json())
            listing = client.get("/v2/images", params={"tag": "s"}).json()
            images_schema = client.get("/v2/schemas/images").json()
            assert images_schema["name"] == "images"
            assert images_schema["properties"]["images"]["items"] == image_schema
            jsonschema.Draft4Validator(images_schema).validate(listing)
        finally:
            client.delete(f"/v2/images/{created.json()['id']}")

"""The JSON Schema of an image, and the check of a document against it.

Clients do not hard-code the image fields: python-glanceclient downloads ``/v2/schemas/image``
to validate what it sends, to tell core fields from custom properties when it builds a JSON
patch, and to generate its CLI options. So the schema served over HTTP and the one the
service validates with must be the same object; it lives here, below both.

Custom properties are the schema's ``additionalProperties``: any name, string values only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import jsonschema

from streamd.errors import BadRequest, Forbidden

DISK_FORMATS = ("ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop")
CONTAINER_FORMATS = ("ami", "ari", "aki", "bare", "ovf", "ova", "docker", "compressed")
VISIBILITIES = ("community", "public", "private", "shared")
STATUSES = ("queued", "saving", "active", "killed", "deleted", "uploading", "importing",
            "pending_delete", "deactivated")

# Fields the server computes: a client that sends one gets 403, as from Glance.
READ_ONLY = frozenset({
    "id", "status", "checksum", "os_hash_algo", "os_hash_value", "size", "virtual_size",
    "created_at", "updated_at", "direct_url", "self", "file", "schema", "stores",
})
# Names a client may never set: image locations stay internal to streamd, and ``os_glance_*``
# is the namespace Glance keeps for itself (import state, stores, cache).
RESERVED = frozenset({"locations", "location"})
RESERVED_PREFIX = "os_glance_"
# Core fields a client may write; none of them may be removed, only replaced.
WRITABLE_CORE = ("name", "visibility", "protected", "os_hidden", "owner", "disk_format",
                 "container_format", "min_ram", "min_disk", "tags")
INT32_MAX = 2**31 - 1  # min_ram/min_disk are 32-bit columns in Glance's schema

_UUID = "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$"


def _nullable(kind: str, description: str, **extra: Any) -> dict[str, Any]:
    return {"type": ["null", kind], "description": description, **extra}


def _read_only(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "readOnly": True}


IMAGE_PROPERTIES: dict[str, dict[str, Any]] = {
    "id": {"type": "string", "description": "The image's identifier, a UUID",
           "pattern": _UUID},
    "name": _nullable("string", "A name for the image; need not be unique", maxLength=255),
    "status": _read_only({"type": "string", "description": "Where the image is in its life cycle",
                          "enum": list(STATUSES)}),
    "visibility": {"type": "string", "description": "Who may see the image",
                   "enum": list(VISIBILITIES)},
    "protected": {"type": "boolean", "description": "While true the image cannot be deleted"},
    "os_hidden": {"type": "boolean",
                  "description": "While true the image is left out of default listings"},
    "checksum": _read_only(_nullable("string", "MD5 of the image data", maxLength=32)),
    "os_hash_algo": _read_only(_nullable("string", "The algorithm of os_hash_value",
                                         maxLength=64)),
    "os_hash_value": _read_only(_nullable("string", "Hex digest of the image data with "
                                          "os_hash_algo", maxLength=128)),
    "owner": _nullable("string", "The project that owns the image", maxLength=255),
    "size": _read_only(_nullable("integer", "Size of the image data in bytes")),
    "virtual_size": _read_only(_nullable("integer", "Size of the virtual disk in bytes")),
    "container_format": _nullable("string", "Format of the container around the disk",
                                  enum=[None, *CONTAINER_FORMATS]),
    "disk_format": _nullable("string", "Format of the disk image",
                             enum=[None, *DISK_FORMATS]),
    "created_at": _read_only({"type": "string", "description": "When the image was created"}),
    "updated_at": _read_only({"type": "string",
                              "description": "When the image was last changed"}),
    "tags": {"type": "array", "description": "Free-form labels of the image",
             "items": {"type": "string", "maxLength": 255}},
    "direct_url": _read_only({"type": "string",
                              "description": "URL of the data in its store (not exposed)"}),
    "min_ram": {"type": "integer", "description": "RAM in MB needed to boot the image"},
    "min_disk": {"type": "integer", "description": "Disk in GB needed to boot the image"},
    "self": _read_only({"type": "string", "description": "The image's URL"}),
    "file": _read_only({"type": "string", "description": "The URL of the image's data"}),
    "stores": _read_only({"type": "string",
                          "description": "Comma-separated stores that hold the data"}),
    "schema": _read_only({"type": "string", "description": "The URL of this schema"}),
    "locations": {"type": "array", "description": "Locations of the data (not exposed)",
                  "items": {"type": "object",
                            "properties": {"url": {"type": "string", "maxLength": 255},
                                           "metadata": {"type": "object"}},
                            "required": ["url", "metadata"]}},
}

IMAGE_SCHEMA: dict[str, Any] = {
    "name": "image",
    "properties": IMAGE_PROPERTIES,
    "additionalProperties": {"type": "string"},
    "links": [
        {"rel": "self", "href": "{self}"},
        {"rel": "enclosure", "href": "{file}"},
        {"rel": "describedby", "href": "{schema}"},
    ],
}

IMAGES_SCHEMA: dict[str, Any] = {
    "name": "images",
    "properties": {
        "images": {"type": "array", "items": IMAGE_SCHEMA},
        "first": {"type": "string"},
        "next": {"type": "string"},
        "schema": {"type": "string"},
    },
    "links": [
        {"rel": "first", "href": "{first}"},
        {"rel": "next", "href": "{next}"},
        {"rel": "describedby", "href": "{schema}"},
    ],
}

# Glance validates with draft 4; the schema uses nothing newer.
_VALIDATOR = jsonschema.Draft4Validator(IMAGE_SCHEMA)
_UUID_TEXT = re.compile(_UUID)


def validate_document(doc: Mapping[str, Any]) -> None:
    """Check an image document a client wrote (create body, patched image); 400 if it is bad.

    Besides the schema: property names must fit the registry's 255-character column, and
    min_ram/min_disk must be 32-bit and not negative, as in Glance.
    """
    error = jsonschema.exceptions.best_match(_VALIDATOR.iter_errors(dict(doc)))
    if error is not None:
        raise BadRequest(f"Provided object does not match schema 'image': {_describe(error)}")
    for name in doc:
        if name in IMAGE_PROPERTIES:
            continue
        if not name:
            raise BadRequest("Property names must not be empty")
        if len(name) > 255:
            raise BadRequest(f"Property name '{name[:32]}…' is {len(name)} characters long; "
                             "the limit is 255")
    image_id = doc.get("id")
    if isinstance(image_id, str) and _UUID_TEXT.fullmatch(image_id) is None:
        # the schema's pattern ends in ``$``, which Python's re (jsonschema's) lets match
        # before a final newline: "<uuid>\n" passed, and became an image id (Glance: a 500)
        raise BadRequest(f"Provided object does not match schema 'image': {image_id!r} is not "
                         "a valid id: use a UUID such as 0a1b2c3d-0000-4000-8000-00000000abcd")
    for name in ("min_ram", "min_disk"):
        value = doc.get(name)
        if isinstance(value, int) and value < 0:
            raise BadRequest(f"Invalid value '{value}' for parameter '{name}': "
                             "cannot be a negative value")
        if isinstance(value, int) and value > INT32_MAX:
            raise BadRequest(f"'{name}' value out of range, must not exceed {INT32_MAX}")


def _describe(error: jsonschema.ValidationError) -> str:
    """The schema error in words: which field, what was wrong, what would be right."""
    where = "/".join(str(p) for p in error.absolute_path) or "the image"
    where = where if len(where) <= 64 else where[:64] + "…"
    if error.validator == "enum":
        allowed = [v for v in error.validator_value if v is not None]
        nullable = " (or null)" if None in error.validator_value else ""
        return (f"{error.instance!r} is not a valid {where}: use one of "
                f"{', '.join(allowed)}{nullable}")
    if error.validator == "maxLength":
        return (f"{where} is {len(error.instance)} characters long; the limit is "
                f"{error.validator_value}")
    if error.validator == "type":
        wanted = error.validator_value
        wanted = " or ".join(wanted) if isinstance(wanted, list) else wanted
        return f"{where} must be of type {wanted}, not {json.dumps(error.instance)[:64]}"
    message = error.message if len(error.message) <= 200 else error.message[:200] + "…"
    return f"{message} (at {where})"


def check_writable(name: str) -> None:
    """403 for a field the client may not set: read-only, or reserved for the server."""
    if name in READ_ONLY:
        raise Forbidden(f"Attribute '{name}' is read-only: the server sets it.")
    if name in RESERVED:
        raise Forbidden(f"Attribute '{name}' is reserved: streamd manages image locations "
                        "itself; upload data with PUT /v2/images/{id}/file.")
    if name.startswith(RESERVED_PREFIX):
        raise Forbidden(f"Attribute '{name}' is reserved: names starting with "
                        f"'{RESERVED_PREFIX}' belong to the server.")

"""Image updates as JSON patches: from the operations a client sent to the registry's changes.

An image is changed with a JSON patch (RFC 6902) on its document, restricted the way
Glance restricts it: only ``add``, ``remove`` and ``replace``; every path names one
top-level field; read-only and reserved fields answer 403; core fields may be replaced but
never removed; ``replace``/``remove`` of a custom property that does not exist is a 409.
The operations run in order, each checked against the document as the earlier ones left
it; the result is validated against the image schema and only then diffed into the
registry's change, so a bad patch changes nothing.

Two media types carry patches: v2.1 is standard JSON patch; v2.0 (still accepted by Glance)
writes each operation as ``{"add": "/path", "value": …}``.

``/locations`` is the one path that goes deeper, as in Glance: ``add /locations/<n|->``,
``remove /locations/<n|->``, ``replace /locations`` (any other depth is a 400). Such an op
is parsed here (its ``position`` is the second part) but not applied: it changes where the
data is, not a field, and ``streamd.service.locations`` carries it out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jsonpatch
import jsonpointer

from streamd import policy
from streamd.context import RequestContext
from streamd.errors import BadRequest, Conflict, Forbidden
from streamd.registry.records import ImageRecord
from streamd.service.image_schema import WRITABLE_CORE, check_writable, validate_document

PATCH_V21 = "application/openstack-images-v2.1-json-patch"
PATCH_V20 = "application/openstack-images-v2.0-json-patch"
MEDIA_TYPES = (PATCH_V20, PATCH_V21)
OPS = ("add", "remove", "replace")
LOCATIONS = "locations"
# how many parts a /locations path has, by op (Glance's _path_depth_limits)
_LOCATION_DEPTH = {"add": 2, "remove": 2, "replace": 1}
_MISSING = object()


@dataclass(frozen=True)
class PatchOp:
    """One checked operation on the top-level field ``name`` (``path`` as the client wrote it)."""

    op: str
    path: str
    name: str
    value: Any = _MISSING
    position: str | None = None  # /locations/<position>: a digit string or "-"

    @property
    def on_locations(self) -> bool:
        """Is this an op on the image's locations (``streamd.service.locations``)?"""
        return self.name == LOCATIONS

    def as_json_patch(self) -> dict[str, Any]:
        step = {"op": self.op, "path": self.path}
        if self.value is not _MISSING:
            step["value"] = self.value
        return step


@dataclass(frozen=True)
class ImageChanges:
    """What an update writes: core columns, custom properties set and removed, the tag set."""

    values: dict[str, Any] = field(default_factory=dict)
    set_properties: dict[str, str] = field(default_factory=dict)
    remove_properties: tuple[str, ...] = ()
    tags: tuple[str, ...] | None = None

    @property
    def empty(self) -> bool:
        return not (self.values or self.set_properties or self.remove_properties
                    or self.tags is not None)


def parse_patch(body: Any, media_type: str = PATCH_V21) -> list[PatchOp]:
    """Check the shape of a patch document (400 on any flaw) and name each op's field."""
    if not isinstance(body, list):
        raise BadRequest("Request body must be a JSON array of operation objects, e.g. "
                         '[{"op": "replace", "path": "/name", "value": "new"}].')
    return [_parse_op(raw, media_type) for raw in body]


def _parse_op(raw: Any, media_type: str) -> PatchOp:
    if not isinstance(raw, dict):
        raise BadRequest("Operations must be JSON objects.")
    if media_type == PATCH_V20:
        named = [k for k in OPS if k in raw]
        if len(named) != 1:
            raise BadRequest('Operation objects must contain exactly one member named "add", '
                             f'"remove", or "replace" (the {PATCH_V20} format).')
        op, path = named[0], raw[named[0]]
    else:
        if "op" not in raw:
            raise BadRequest("Unable to find `op` in JSON Schema change. It must be one of "
                             "the following: add, remove, replace.")
        op, path = raw["op"], raw.get("path", _MISSING)
        if op not in OPS:
            raise BadRequest(f"Invalid operation: `{op}`. It must be one of the following: "
                             "add, remove, replace.")
        if path is _MISSING:
            raise BadRequest(f'Operation "{op}" requires a member named "path".')
    if not isinstance(path, str) or not path.startswith("/"):
        raise BadRequest(f'Pointer `{path}` does not start with "/".')
    try:
        parts = jsonpointer.JsonPointer(path).parts
    except jsonpointer.JsonPointerException as e:
        raise BadRequest(f"Invalid JSON pointer {path!r}: {e}") from None
    if parts and parts[0] == LOCATIONS:
        return _location_op(raw, op, path, parts)
    check_writable(parts[0])
    if len(parts) != 1:
        raise BadRequest(f"Invalid JSON pointer for this resource: {path!r}: a path names one "
                         "image field, e.g. /name or /tags (replace the whole tag list).")
    if op in ("add", "replace") and "value" not in raw:
        raise BadRequest(f'Operation "{op}" requires a member named "value".')
    return PatchOp(op, path, parts[0], raw["value"] if op != "remove" else _MISSING)


def _location_op(raw: dict[str, Any], op: str, path: str, parts: list[str]) -> PatchOp:
    if len(parts) != _LOCATION_DEPTH[op]:
        raise BadRequest(f"Invalid JSON pointer for this resource: {path!r}: use add "
                         "/locations/- (or /locations/<n>), remove /locations/<n>, or replace "
                         "/locations.")
    if op in ("add", "replace") and "value" not in raw:
        raise BadRequest(f'Operation "{op}" requires a member named "value".')
    position = parts[1] if len(parts) == 2 else None
    return PatchOp(op, path, LOCATIONS, raw["value"] if op != "remove" else _MISSING,
                   position)


def editable_document(image: ImageRecord) -> dict[str, Any]:
    """The part of an image's JSON a patch may touch: writable core fields, tags, properties."""
    doc: dict[str, Any] = {name: getattr(image, name) for name in WRITABLE_CORE
                           if name != "tags"}
    doc["tags"] = list(image.tags)
    doc.update(image.properties)
    return doc


def apply_patch(ctx: RequestContext, image: ImageRecord, ops: list[PatchOp]) -> ImageChanges:
    """Run ``ops`` on ``image``'s document and return the change, or raise before any write."""
    doc = editable_document(image)
    for op in ops:
        _check_op(ctx, doc, op)
        try:
            doc = jsonpatch.apply_patch(doc, [op.as_json_patch()])
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as e:
            raise BadRequest(f"Cannot apply {op.op} {op.path}: {e}") from None
    validate_document(doc)
    return diff(image, doc)


def _check_op(ctx: RequestContext, doc: Mapping[str, Any], op: PatchOp) -> None:
    if op.on_locations:  # a caller that did not hand these to streamd.service.locations
        raise Forbidden("Attribute 'locations' is reserved: locations change through the "
                        "location operations, which this request does not support.")
    core = op.name in WRITABLE_CORE
    if op.op == "remove" and core:
        raise Forbidden(f"Property {op.name} may not be removed; replace it instead.")
    if op.op in ("remove", "replace") and not core and op.name not in doc:
        raise Conflict(f"Property {op.name} does not exist; use \"add\" to create it.")
    if op.name == "owner":
        policy.ensure_may_change_owner(ctx)
    if op.name == "visibility":
        policy.ensure_may_set_visibility(ctx, op.value)


def diff(image: ImageRecord, doc: Mapping[str, Any]) -> ImageChanges:
    """The registry change that turns ``image`` into the patched document ``doc``."""
    values = {name: doc[name] for name in WRITABLE_CORE
              if name != "tags" and doc[name] != getattr(image, name)}
    new_tags = tuple(sorted(set(doc["tags"])))
    tags = new_tags if new_tags != tuple(sorted(image.tags)) else None
    props = {k: v for k, v in doc.items() if k not in WRITABLE_CORE}
    set_properties = {k: v for k, v in props.items() if image.properties.get(k) != v}
    removed = tuple(k for k in image.properties if k not in props)
    return ImageChanges(values, set_properties, removed, tags)

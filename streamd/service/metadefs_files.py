"""Namespace files: ``streamd metadefs load|export|unload``.

The format is Glance's ``etc/metadefs/*.json`` (one namespace per file: its fields,
``resource_type_associations``, ``properties``, ``objects``, ``tags``), so an operator can
load the definitions their distribution ships with Glance. Each file is checked with the
API's namespace schema before anything is written; one namespace is created all or nothing.
As ``glance-manage db load_metadefs``: a namespace that exists already is skipped (or, with
``replace``, deleted and loaded anew), and one without an ``owner`` is owned by ``admin``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamd.errors import BadRequest, NotFound, StreamdError
from streamd.registry.metadefs import (
    ADMIN,
    MetadefRegistry,
    NamespaceContents,
    NewAssociation,
    NewObject,
)
from streamd.service.metadefs import (
    check_contents,
    new_association,
    new_object,
    property_fragment,
    validate,
)

DEFAULT_OWNER = "admin"  # glance-manage's owner of the namespaces it loads


class DefinitionFileError(StreamdError):
    """A namespace file that cannot be loaded; the message names the file and why."""

    status = 400


@dataclass
class LoadReport:
    loaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # existed already (no ``replace``)


@dataclass(frozen=True)
class _Namespace:
    """One file, parsed and checked: what ``create_namespace`` is given."""

    values: dict[str, Any]
    resource_types: list[NewAssociation]
    properties: dict[str, dict[str, Any]]
    objects: list[NewObject]
    tags: list[str]


def _read(path: Path) -> _Namespace:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DefinitionFileError(f"{path}: not a readable JSON file ({e})") from None
    try:
        doc = validate("namespace", document)
        check_contents(doc)
        values = {k: doc[k] for k in ("namespace", "display_name", "description",
                                      "visibility", "protected") if k in doc}
        values["owner"] = doc.get("owner", DEFAULT_OWNER)  # (visibility: private unless set)
        return _Namespace(
            values,
            resource_types=[new_association(a) for a in doc.get("resource_type_associations")
                            or ()],
            properties={k: property_fragment(v, k)
                        for k, v in (doc.get("properties") or {}).items()},
            objects=[new_object(o) for o in doc.get("objects") or ()],
            tags=[t["name"] for t in doc.get("tags") or () if "name" in t],
        )
    except StreamdError as e:
        raise DefinitionFileError(f"{path}: {e.message}") from None


def definition_files(directory: Path) -> list[Path]:
    """The ``*.json`` files of ``directory`` (or the one file it names), by name."""
    if directory.is_file():
        return [directory]
    if not directory.is_dir():
        raise DefinitionFileError(f"{directory}: no such directory")
    files = sorted(p for p in directory.iterdir() if p.suffix == ".json" and p.is_file())
    if not files:
        raise DefinitionFileError(f"{directory}: no namespace files (*.json) in it")
    return files


def load(registry: MetadefRegistry, directory: Path, *, replace: bool = False) -> LoadReport:
    """Load every namespace file; all files are read and checked before the first write."""
    parsed = [_read(path) for path in definition_files(directory)]
    report = LoadReport()
    for ns in parsed:
        name = ns.values["namespace"]
        try:
            registry.namespace(name, ADMIN)
        except NotFound:
            pass
        else:
            if not replace:
                report.skipped.append(name)
                continue
            registry.delete_namespace(name, ADMIN)
        registry.create_namespace(ns.values, resource_types=ns.resource_types,
                                  properties=ns.properties, objects=ns.objects, tags=ns.tags)
        report.loaded.append(name)
    return report


def namespace_document(contents: NamespaceContents) -> dict[str, Any]:
    """A namespace in the file format (fields without a value left out)."""
    ns = contents.namespace
    doc: dict[str, Any] = {"namespace": ns.namespace}
    for key in ("display_name", "description", "visibility", "protected", "owner"):
        if getattr(ns, key) is not None:
            doc[key] = getattr(ns, key)
    if ns.resource_types:
        doc["resource_type_associations"] = [
            {k: v for k, v in (("name", a.name), ("prefix", a.prefix),
                               ("properties_target", a.properties_target)) if v is not None}
            for a in ns.resource_types]
    if contents.properties:
        doc["properties"] = {p.name: {k: v for k, v in p.schema.items() if k != "name"}
                             for p in contents.properties}
    if contents.objects:
        doc["objects"] = []
        for o in contents.objects:
            obj: dict[str, Any] = {"name": o.name}
            if o.description is not None:
                obj["description"] = o.description
            if o.required:
                obj["required"] = o.required
            if o.properties:
                obj["properties"] = o.properties
            doc["objects"].append(obj)
    if contents.tags:
        doc["tags"] = [{"name": t.name} for t in sorted(contents.tags, key=lambda t: t.name)]
    return doc


def file_name(namespace: str) -> str:
    """``OS::Compute::CPUPinning`` -> ``OS-Compute-CPUPinning.json``."""
    return (re.sub(r"[^A-Za-z0-9._]+", "-", namespace).strip("-") or "namespace") + ".json"


def export(registry: MetadefRegistry, directory: Path,
           names: Iterable[str] | None = None) -> list[Path]:
    """Write each namespace (all, or those ``names``) to its own file in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name in list(names) if names is not None else registry.namespace_names():
        path = directory / file_name(name)
        if path in written:
            raise BadRequest(f"namespaces {name} and another one both export to {path.name}")
        document = namespace_document(registry.contents(name, ADMIN))
        path.write_text(json.dumps(document, indent=4, ensure_ascii=False) + "\n",
                        encoding="utf-8")
        written.append(path)
    return written


def unload(registry: MetadefRegistry, names: Iterable[str] | None = None) -> list[str]:
    """Delete namespaces (all, or those ``names``), protected ones included; with no names,
    the resource types go too (as ``glance-manage db unload_metadefs``)."""
    chosen = list(names) if names is not None else registry.namespace_names()
    for name in chosen:
        registry.delete_namespace(name, ADMIN)
    if names is None:
        registry.delete_unused_resource_types()
    return chosen

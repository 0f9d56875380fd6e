"""The effective settings as text for ``streamd config show``: each value, secrets masked,
and where it came from (``default``, ``file PATH``, ``env STREAMD_…``, ``flag --…``).

An operator asks "which value is the server using, and why" before anything else; this
answers it without starting the server and without printing a password.
"""

from __future__ import annotations

import dataclasses
import urllib.parse
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from streamd.config import Settings
from streamd.store_config import SECRET_OPTIONS

MASK = "***"
# settings whose value is a secret
SECRET_SETTINGS = frozenset({"keystone_service_password", "keystone_service_token"})


def describe_settings(settings: Settings, sources: Mapping[str, str]) -> Iterator[str]:
    """One ``name = value  # source`` line per setting (TOML values), then one per store
    option (``stores.<id>.<option>``)."""
    for field in dataclasses.fields(settings):
        if field.name == "stores":
            continue
        value = getattr(settings, field.name)
        yield _line(field.name, _shown(field.name, value), sources.get(field.name, "default"))
    where = sources.get("stores", "default")
    for spec in settings.stores:
        prefix = f"stores.{spec.id}"
        yield _line(f"{prefix}.type", spec.type, where)
        if spec.description:
            yield _line(f"{prefix}.description", spec.description, where)
        for option, value in spec.options.items():
            if value is not None:
                yield _line(f"{prefix}.{option}",
                            MASK if option in SECRET_OPTIONS else value, where)


def _shown(name: str, value: Any) -> Any:
    if value is None or not isinstance(value, str):
        return value
    if name in SECRET_SETTINGS:
        return MASK
    if name == "database_url":
        return _without_password(value)
    return value


def _without_password(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", f":{MASK}@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _line(name: str, value: Any, source: str) -> str:
    return f"{name} = {_toml(value)}  # {source}"


def _toml(value: Any) -> str:
    """A value as it would be written in the settings file (unset: a comment word)."""
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, Path):
        value = str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'

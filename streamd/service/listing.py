"""Image listings: Glance's query language (filters, sorts, markers, limits) into a registry query.

``GET /v2/images`` takes its whole request in the query string; ``parse_listing`` checks all of
it before the registry is asked, so that a typo in a filter is a 400 that names it rather
than an empty page. What it accepts, as Glance does:

- ``limit`` (default ``limit_param_default``, capped at ``api_limit_max``), ``marker`` (the id
  of the last image of the previous page);
- ``sort_key``/``sort_dir`` (repeatable, one direction for all keys or one per key) or
  ``sort=key[:dir],…`` — not both; keys are Glance's eight sort keys; ``created_at`` and
  ``id`` are appended as tie-breakers so that marker paging is exact;
- filters ``name``, ``status``, ``container_format``, ``disk_format``, ``id`` with
  ``eq:`` or ``in:a,b`` (quote a value that contains a comma: ``in:"a,b",c``);
  ``created_at``/``updated_at`` with ``eq neq gt gte lt lte`` and an ISO 8601 time;
  ``size`` (exact), ``size_min``/``size_max``, ``min_ram``/``min_disk`` (whole numbers; Glance
  answers an empty page for ``size=abc``, streamd a 400 naming the filter); ``protected``/
  ``os_hidden`` ``true|false``; ``visibility`` (``public private shared community all``);
  ``owner``; ``tag`` (repeatable, all must match);
  ``member_status`` (``accepted`` by default: which of the shared images offered to the
  caller are listed, by its answer; ``all`` for any); anything else is a custom property that
  must equal the value.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from streamd import policy
from streamd.config import Settings
from streamd.context import RequestContext
from streamd.errors import BadRequest
from streamd.registry import integer_range
from streamd.registry.records import GLANCE_SORT_KEYS, Filter, ImageQuery, ImageRecord
from streamd.service.image_schema import VISIBILITIES

SORT_DIRS = ("asc", "desc")
DEFAULT_SORT_DIR = "desc"  # newest first, as in Glance
TIME_OPS = ("eq", "neq", "gt", "gte", "lt", "lte")
LIST_OPS = ("eq", "in")
# filters that take the eq:/in: operators
OPERATOR_FIELDS = ("name", "status", "container_format", "disk_format", "id")
# filters compared as given (no operator prefix), as in Glance
PLAIN_FIELDS = ("owner", "checksum", "os_hash_value")
BOOL_FIELDS = ("protected", "os_hidden")
INT_FIELDS = ("min_ram", "min_disk", "size")  # size: exact, as Glance (also size_min/max)
MEMBER_STATUSES = ("accepted", "pending", "rejected", "all")
REPEATABLE = ("tag", "sort_key", "sort_dir")


@dataclass(frozen=True)
class Listing:
    """A checked listing request: the registry query and the page size the caller asked for."""

    query: ImageQuery
    limit: int


@dataclass(frozen=True)
class Page:
    """One page of images; ``next_marker`` is set when more images may follow."""

    images: list[ImageRecord]
    next_marker: str | None


def parse_listing(
    params: Sequence[tuple[str, str]], ctx: RequestContext, settings: Settings
) -> Listing:
    """Turn the query string's (name, value) pairs into a registry query; 400 on any flaw."""
    seen: set[str] = set()
    for name, _ in params:
        if name in seen and name not in REPEATABLE and not _is_custom(name):
            raise BadRequest(f"Query parameter {name!r} was given more than once; give it once"
                             " (only tag, sort_key and sort_dir may repeat).")
        seen.add(name)
    single = {name: value for name, value in params}
    filters: list[Filter] = []
    tags: list[str] = []
    properties: list[tuple[str, str]] = []
    for name, value in params:
        if name in ("limit", "marker", "sort", "sort_key", "sort_dir"):
            continue
        if name == "tag":
            tags.append(value)
        elif _is_custom(name):
            properties.append((name, value))
        else:
            filters.extend(_filters(name, value))
    return Listing(
        query=ImageQuery(
            viewer=policy.viewer(ctx),
            filters=tuple(filters),
            tags=tuple(tags),
            properties=tuple(properties),
            sort=_sort(params),
            marker=single.get("marker"),
            member_status=single.get("member_status", "accepted"),
        ),
        limit=_limit(single.get("limit"), settings),
    )


def _is_custom(name: str) -> bool:
    known = (*OPERATOR_FIELDS, *PLAIN_FIELDS, *BOOL_FIELDS, *INT_FIELDS, *REPEATABLE,
             "limit", "marker", "sort", "visibility", "member_status", "size_min", "size_max",
             "created_at", "updated_at")
    return name not in known


def _limit(raw: str | None, settings: Settings) -> int:
    if raw is None:
        return settings.limit_param_default
    try:
        limit = int(raw)
    except ValueError:
        raise BadRequest(f"limit param must be an integer, not {raw!r}") from None
    if limit < 0:
        raise BadRequest(f"limit param must be positive, not {limit}")
    return min(limit, settings.api_limit_max)


def _sort(params: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """Glance's two sort syntaxes into (key, dir) pairs, with created_at and id appended."""
    keys = [v for k, v in params if k == "sort_key"]
    dirs = [v for k, v in params if k == "sort_dir"]
    new = [v for k, v in params if k == "sort"]
    default_dir = DEFAULT_SORT_DIR
    if new:
        if keys or dirs:
            raise BadRequest("Old and new sorting syntax cannot be combined: use either "
                             "sort=key:dir,… or sort_key=…&sort_dir=…")
        pairs = []
        for item in new[0].split(","):
            key, sep, direction = item.strip().partition(":")
            pairs.append((key, direction if sep else DEFAULT_SORT_DIR))
    else:
        if len(dirs) > 1 and len(dirs) != len(keys):
            raise BadRequest(f"Number of sort dirs ({len(dirs)}) does not match the number of "
                             f"sort keys ({len(keys)}): give one sort_dir per sort_key, or one "
                             "for all")
        if len(dirs) == 1:
            default_dir = dirs[0]
        keys = keys or ["created_at"]
        pairs = list(zip(keys, dirs if len(dirs) > 1 else [default_dir] * len(keys),
                         strict=True))
    for key, direction in pairs:
        if key not in GLANCE_SORT_KEYS:
            raise BadRequest(f"Invalid sort key: {key!r}. It must be one of the following: "
                             f"{', '.join(GLANCE_SORT_KEYS)}.")
        if direction not in SORT_DIRS:
            raise BadRequest(f"Invalid sort direction: {direction!r}. It must be asc or desc.")
    for tie_breaker in ("created_at", "id"):
        if tie_breaker not in (k for k, _ in pairs):
            pairs.append((tie_breaker, default_dir))
    return tuple(pairs)


def _filters(name: str, value: str) -> list[Filter]:
    if name in OPERATOR_FIELDS:
        op, values = _operator(name, value, LIST_OPS)
        return [Filter(name, op, tuple(_split_list(values)) if op == "in" else values)]
    if name in ("created_at", "updated_at"):
        prefix = value.partition(":")[0]
        if prefix.isalpha():  # an operator, known or not; a bare time starts with a digit
            op, raw_time = _operator(name, value, TIME_OPS)
        else:
            op, raw_time = "eq", value
        return [Filter(name, op, _parse_time(name, raw_time))]
    if name in PLAIN_FIELDS:
        return [Filter(name, "eq", value)]
    if name in BOOL_FIELDS:
        # any case: openstacksdk sends os_hidden=True, which Glance accepts
        if value.lower() not in ("true", "false"):
            raise BadRequest(f"Invalid value {value!r} for {name!r} filter. Valid values are "
                             "'true' or 'false'.")
        return [Filter(name, "eq", value.lower() == "true")]
    if name in INT_FIELDS:
        return [Filter(name, "eq", _integer(name, value))]
    if name in ("size_min", "size_max"):
        return [Filter("size", "gte" if name == "size_min" else "lte", _integer(name, value))]
    if name == "visibility":
        if value == "all":
            return [Filter("visibility", "in", VISIBILITIES)]
        if value not in VISIBILITIES:
            raise BadRequest(f"Invalid visibility value: {value!r}. Use one of "
                             f"{', '.join(VISIBILITIES)} or all.")
        return [Filter("visibility", "eq", value)]
    if name == "member_status":  # not a filter on images: it goes into the query's scope
        if value not in MEMBER_STATUSES:
            raise BadRequest(f"Invalid status: {value!r}. member_status is one of "
                             f"{', '.join(MEMBER_STATUSES)}.")
        return []
    raise AssertionError(f"unhandled listing filter {name}")  # pragma: no cover


def _operator(name: str, value: str, allowed: Sequence[str]) -> tuple[str, str]:
    """Split ``op:value`` (no colon means ``eq``), as Glance does for operator filters."""
    op, sep, rest = value.partition(":")
    if not sep:
        return "eq", value
    if op not in allowed:
        raise BadRequest(
            f"Unable to filter {name} by unknown operator {op!r}: use {', '.join(allowed)} "
            f"(e.g. {name}={allowed[0]}:VALUE; write eq:{value} to match a value containing ':')."
        )
    return op, rest


def _split_list(values: str) -> list[str]:
    """``a,b`` or ``"a,b",c`` → the items (double quotes protect commas)."""
    try:
        return next(csv.reader([values], quotechar='"', skipinitialspace=True, strict=True))
    except (csv.Error, StopIteration):
        raise BadRequest(f"Cannot split the in: list {values!r}: quote items that contain "
                         'commas with ", e.g. in:"a,b",c') from None


def _integer(name: str, value: str) -> int:
    """A whole number that the filter's column can hold (``integer_range``)."""
    try:
        number = int(value)
    except ValueError:
        raise BadRequest(f"Unable to filter {name} with a non-numeric value {value!r}: "
                         "give a whole number.") from None
    low, high = integer_range("size" if name in ("size_min", "size_max") else name)
    if not low <= number <= high:
        raise BadRequest(f"Unable to filter {name} with {value!r}: the value must lie between "
                         f"{low} and {high}.")
    return number


def _parse_time(name: str, value: str) -> dt.datetime:
    """ISO 8601 into the registry's naive UTC."""
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(f'Bad "{name}" query filter format {value!r}. Use ISO 8601 DateTime '
                         "notation, e.g. 2024-01-31T12:00:00Z.") from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    return moment

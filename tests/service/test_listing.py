"""The listing parser: Glance's query language into a registry query, or a 400 naming the flaw."""

from __future__ import annotations

import datetime as dt

import pytest

from streamd.config import Settings
from streamd.context import RequestContext
from streamd.errors import BadRequest
from streamd.registry.records import Filter
from streamd.service.listing import parse_listing

MEMBER = RequestContext(project_id="p1", roles=frozenset({"member"}))
SETTINGS = Settings(limit_param_default=25, api_limit_max=1000)


def parse(query: str, ctx: RequestContext = MEMBER):  # noqa: ANN201
    pairs = [tuple(p.split("=", 1)) for p in query.split("&") if p]
    return parse_listing(pairs, ctx, SETTINGS)


def test_defaults_newest_first_with_tie_breaker() -> None:
    listing = parse("")
    assert listing.limit == 25
    assert listing.query.sort == (("created_at", "desc"), ("id", "desc"))
    assert listing.query.viewer.project_id == "p1" and not listing.query.viewer.is_admin
    assert listing.query.filters == () and listing.query.marker is None


@pytest.mark.parametrize(("query", "sort"), [
    ("sort_key=name", (("name", "desc"), ("created_at", "desc"), ("id", "desc"))),
    ("sort_key=name&sort_dir=asc", (("name", "asc"), ("created_at", "asc"), ("id", "asc"))),
    ("sort_key=name&sort_key=size&sort_dir=asc&sort_dir=desc",
     (("name", "asc"), ("size", "desc"), ("created_at", "desc"), ("id", "desc"))),
    ("sort=name:asc,status", (("name", "asc"), ("status", "desc"), ("created_at", "desc"),
                              ("id", "desc"))),
    ("sort=id:asc", (("id", "asc"), ("created_at", "desc"))),
])
def test_sorts(query: str, sort: tuple[tuple[str, str], ...]) -> None:
    assert parse(query).query.sort == sort


@pytest.mark.parametrize(("query", "words"), [
    ("sort_key=owner", ["Invalid sort key", "'owner'", "name, status"]),
    ("sort_dir=up", ["Invalid sort direction", "'up'"]),
    ("sort=name:sideways", ["Invalid sort direction", "'sideways'"]),
    ("sort=name&sort_key=id", ["cannot be combined"]),
    ("sort_key=name&sort_dir=asc&sort_dir=desc", ["does not match the number of sort keys"]),
    ("limit=-1", ["limit", "positive"]),
    ("limit=ten", ["limit", "integer"]),
    ("limit=1&limit=2", ["'limit'", "more than once"]),
    ("name=like:cirros", ["unknown operator 'like'", "eq:like:cirros"]),
    ("id=neq:x", ["unknown operator 'neq'"]),
    ("created_at=after:2024-01-01", ["unknown operator 'after'"]),
    ("created_at=gt:yesterday", ["ISO 8601"]),
    ("size_min=big", ["size_min", "non-numeric"]),
    ("min_ram=2147483648", ["min_ram", "between -2147483648 and 2147483647"]),
    ("min_disk=-2147483649", ["min_disk", "between -2147483648 and 2147483647"]),
    ("protected=yes", ["'protected'", "'true' or 'false'"]),
    ("visibility=everyone", ["visibility", "all"]),
    ("member_status=maybe", ["member_status"]),
    ('name=in:"a,b', ["in: list"]),
])
def test_bad_queries_name_the_problem(query: str, words: list[str]) -> None:
    with pytest.raises(BadRequest) as info:
        parse(query)
    for word in words:
        assert word in info.value.message


def test_limit_is_capped_and_marker_kept() -> None:
    listing = parse("limit=5000&marker=abc")
    assert listing.limit == 1000
    assert listing.query.marker == "abc"
    assert parse("limit=0").limit == 0


def test_filters() -> None:
    query = parse("name=in:a,\"b,c\"&status=eq:active&disk_format=qcow2&owner=in:x"
                  "&size_min=10&size_max=20&protected=true&os_hidden=True&min_ram=512"
                  "&updated_at=2024-02-01"
                  "&tag=a&tag=b&hw_disk_bus=virtio&member_status=all&visibility=all").query
    assert query.filters == (
        Filter("name", "in", ("a", "b,c")),
        Filter("status", "eq", "active"),
        Filter("disk_format", "eq", "qcow2"),
        Filter("owner", "eq", "in:x"),  # owner takes no operator in Glance
        Filter("size", "gte", 10),
        Filter("size", "lte", 20),
        Filter("protected", "eq", True),
        Filter("os_hidden", "eq", True),
        Filter("min_ram", "eq", 512),
        Filter("updated_at", "eq", dt.datetime(2024, 2, 1)),
        Filter("visibility", "in", ("community", "public", "private", "shared")),
    )
    assert query.tags == ("a", "b")
    assert query.properties == (("hw_disk_bus", "virtio"),)


def test_time_filter_converts_offsets_to_utc() -> None:
    (f,) = parse_listing([("created_at", "gte:2024-01-31T13:00:00+01:00")], MEMBER,
                         SETTINGS).query.filters
    assert f == Filter("created_at", "gte", dt.datetime(2024, 1, 31, 12, 0, 0))
    (f,) = parse_listing([("created_at", "2024-01-31T12:00:00Z")], MEMBER,
                         SETTINGS).query.filters
    assert f == Filter("created_at", "eq", dt.datetime(2024, 1, 31, 12, 0, 0))


def test_custom_properties_may_repeat() -> None:
    query = parse("os_distro=ubuntu&os_distro=debian").query
    assert query.properties == (("os_distro", "ubuntu"), ("os_distro", "debian"))

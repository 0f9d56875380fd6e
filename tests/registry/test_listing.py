"""ImageRegistry.list on every database: filters, who sees what, sort orders, marker pages."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from streamd.errors import BadRequest
from streamd.registry import Filter, ImageQuery, ImageRecord, ImageRegistry, Viewer
from streamd.registry.images import SORT_KEYS
from tests.registry.conftest import FakeClock, migrated_database

ADMIN = Viewer(project_id="admin-project", is_admin=True)
T0 = dt.datetime(2024, 5, 1, 12, 0, 0)


def names(records: Sequence[ImageRecord]) -> list[str | None]:
    return [r.name for r in records]


def listed(registry: ImageRegistry, viewer: Viewer = ADMIN, **kwargs: Any) -> set[str | None]:
    return set(names(registry.list(ImageQuery(viewer=viewer, limit=1000, **kwargs))))


@dataclass
class Populated:
    """A registry on a database of its own, filled once per module and only read by tests."""

    registry: ImageRegistry
    clock: FakeClock = field(default_factory=FakeClock)
    images: dict[str, ImageRecord] = field(default_factory=dict)


@pytest.fixture(scope="module")
def populated(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """``populated(fill)``: a fresh database per fill function, kept for the module."""
    with contextlib.ExitStack() as stack:
        made: dict[Any, Populated] = {}

        def get(fill: Any) -> Populated:
            if fill not in made:
                engine = stack.enter_context(
                    migrated_database(backend, tmp_path_factory.mktemp(fill.__name__)))
                clock = FakeClock(T0)
                made[fill] = Populated(ImageRegistry(engine, clock=clock), clock)
                fill(made[fill])
            return made[fill]

        yield get


# -- filters ------------------------------------------------------------------------------------


def fill_catalogue(db: Populated) -> None:
    """Five images a second apart from T0; 'hidden' is os_hidden; 'gamma' updated later."""
    registry, clock, made = db.registry, db.clock, db.images
    specs = [
        ("alpha", dict(status="active", visibility="public", owner="p1", size=100,
                       container_format="bare", disk_format="qcow2"),
         {"os_distro": "ubuntu", "arch": "x86_64"}, ["x", "y"]),
        ("beta", dict(status="queued", visibility="private", owner="p1", protected=True,
                      container_format="ovf", disk_format="raw"),
         {"os_distro": "fedora", "arch": "x86_64"}, ["x"]),
        ("gamma", dict(status="active", visibility="shared", owner="p2", size=300,
                       container_format="bare", disk_format="raw"),
         {"os_distro": "ubuntu", "arch": "aarch64"}, ["y", "Y"]),
        ("delta", dict(status="killed", visibility="private", owner="p2", size=200,
                       container_format="bare", disk_format="iso"),
         {}, []),
        ("hidden", dict(status="active", visibility="public", owner="p1", size=150,
                        os_hidden=True, container_format="bare", disk_format="qcow2"),
         {"os_distro": "ubuntu"}, ["x"]),
    ]
    for name, values, properties, tags in specs:
        made[name] = registry.create({"name": name, **values}, properties, tags)
        clock.advance()
    clock.advance(100)
    made["gamma"] = registry.update(made["gamma"].id, {"min_ram": 512})


@pytest.fixture
def catalogue(populated: Any) -> Populated:
    return populated(fill_catalogue)


VISIBLE = {"alpha", "beta", "gamma", "delta"}


def at(seconds: int) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


FILTER_CASES = [
    ([Filter("name", "eq", "alpha")], {"alpha"}),
    ([Filter("name", "eq", "ALPHA")], set()),
    ([Filter("name", "in", ["alpha", "gamma", "nope"])], {"alpha", "gamma"}),
    ([Filter("status", "eq", "active")], {"alpha", "gamma"}),
    ([Filter("status", "in", ["queued", "killed"])], {"beta", "delta"}),
    ([Filter("visibility", "eq", "private")], {"beta", "delta"}),
    ([Filter("visibility", "eq", "public")], {"alpha"}),
    ([Filter("owner", "eq", "p2")], {"gamma", "delta"}),
    ([Filter("container_format", "eq", "ovf")], {"beta"}),
    ([Filter("disk_format", "eq", "raw")], {"beta", "gamma"}),
    ([Filter("disk_format", "in", ["iso", "qcow2"])], {"alpha", "delta"}),
    ([Filter("size", "gte", 150)], {"gamma", "delta"}),
    ([Filter("size", "gte", 100), Filter("size", "lte", 200)], {"alpha", "delta"}),
    ([Filter("size", "gt", 100), Filter("size", "lt", 300)], {"delta"}),
    ([Filter("size", "eq", "300")], {"gamma"}),
    ([Filter("protected", "eq", True)], {"beta"}),
    ([Filter("protected", "eq", "false")], {"alpha", "gamma", "delta"}),
    ([Filter("os_hidden", "eq", True)], {"hidden"}),
    ([Filter("os_hidden", "eq", False)], VISIBLE),
    ([Filter("min_ram", "gte", 1)], {"gamma"}),
    ([Filter("created_at", "eq", at(1))], {"beta"}),
    ([Filter("created_at", "neq", at(1))], {"alpha", "gamma", "delta"}),
    ([Filter("created_at", "gt", at(1))], {"gamma", "delta"}),
    ([Filter("created_at", "gte", at(1))], {"beta", "gamma", "delta"}),
    ([Filter("created_at", "lt", at(1))], {"alpha"}),
    ([Filter("created_at", "lte", at(1))], {"alpha", "beta"}),
    ([Filter("created_at", "gte", at(1)), Filter("created_at", "lt", at(3))], {"beta", "gamma"}),
    # ISO 8601 strings and aware datetimes are compared in UTC
    ([Filter("created_at", "eq", "2024-05-01T12:00:02Z")], {"gamma"}),
    ([Filter("created_at", "eq", "2024-05-01T14:00:02+02:00")], {"gamma"}),
    ([Filter("created_at", "lte", dt.datetime(2024, 5, 1, 7, 0, 0,
                                              tzinfo=dt.timezone(dt.timedelta(hours=-5))))],
     {"alpha"}),
    ([Filter("updated_at", "gt", at(10))], {"gamma"}),
    ([Filter("updated_at", "gte", at(105))], {"gamma"}),
    ([Filter("updated_at", "lte", at(10))], {"alpha", "beta", "delta"}),
    ([Filter("updated_at", "lt", at(1))], {"alpha"}),
    ([Filter("updated_at", "eq", at(105))], {"gamma"}),
    ([Filter("updated_at", "neq", at(105))], {"alpha", "beta", "delta"}),
    ([Filter("name", "neq", "alpha"), Filter("status", "eq", "active")], {"gamma"}),
]


@pytest.mark.parametrize(("filters", "expected"), FILTER_CASES,
                         ids=[f"{f[0].field}-{f[0].op}-{i}" for i, (f, _) in
                              enumerate(FILTER_CASES)])
def test_filter(
    catalogue: Populated,
    filters: list[Filter], expected: set[str]
) -> None:
    registry = catalogue.registry
    assert listed(registry, filters=tuple(filters)) == expected


def test_id_in(catalogue: Populated) -> None:
    registry = catalogue.registry
    ids = [catalogue.images["alpha"].id, catalogue.images["delta"].id, "not-an-image"]
    assert listed(registry, filters=(Filter("id", "in", ids),)) == {"alpha", "delta"}
    assert listed(registry, filters=(Filter("id", "eq", catalogue.images["beta"].id),)) == {"beta"}


@pytest.mark.parametrize(("tags", "expected"), [
    (("x",), {"alpha", "beta"}),
    (("x", "y"), {"alpha"}),
    (("y",), {"alpha", "gamma"}),
    (("Y",), {"gamma"}),
    (("y", "Y"), {"gamma"}),
    (("x", "y", "Y"), set()),
    (("z",), set()),
])
def test_tags_all_must_match(
    catalogue: Populated,
    tags: tuple[str, ...], expected: set[str]
) -> None:
    registry = catalogue.registry
    assert listed(registry, tags=tags) == expected


@pytest.mark.parametrize(("properties", "expected"), [
    ((("os_distro", "ubuntu"),), {"alpha", "gamma"}),
    ((("os_distro", "ubuntu"), ("arch", "x86_64")), {"alpha"}),
    ((("arch", "x86_64"),), {"alpha", "beta"}),
    ((("os_distro", "Ubuntu"),), set()),
    ((("missing", "x"),), set()),
])
def test_custom_property_equality(
    catalogue: Populated,
    properties: tuple[tuple[str, str], ...], expected: set[str]
) -> None:
    registry = catalogue.registry
    assert listed(registry, properties=properties) == expected


def test_filters_tags_and_properties_combine(
    catalogue: Populated
) -> None:
    registry = catalogue.registry
    query = dict(filters=(Filter("status", "eq", "active"),), tags=("y",),
                 properties=(("arch", "aarch64"),))
    assert listed(registry, **query) == {"gamma"}
    # the same for a project's own listing, whose page is merged from several seeks
    assert listed(registry, Viewer("p2"), **query) == {"gamma"}
    assert listed(registry, Viewer("p1"), **query) == set()


def test_hidden_images_listed_only_when_asked(
    catalogue: Populated
) -> None:
    registry = catalogue.registry
    assert "hidden" not in listed(registry)
    assert "hidden" not in listed(registry, Viewer("p1"))
    assert listed(registry, Viewer("p1"), filters=(Filter("os_hidden", "eq", True),)) == {
        "hidden"}
    # a hidden image is still found by id
    assert registry.get(catalogue.images["hidden"].id).name == "hidden"


@pytest.mark.parametrize("bad", [
    Filter("location", "eq", "file:///etc/passwd"),
    Filter("name", "like", "a%"),
    Filter("size", "gt", "big"),
    Filter("size", "eq", True),
    Filter("protected", "eq", "maybe"),
    Filter("created_at", "gt", "yesterday"),
    Filter("updated_at", "lt", 12),
])
def test_bad_filter_is_bad_request(registry: ImageRegistry, bad: Filter) -> None:
    with pytest.raises(BadRequest, match=bad.field):
        registry.list(ImageQuery(viewer=ADMIN, filters=(bad,)))


# -- who sees what ------------------------------------------------------------------------------


def fill_estate(db: Populated) -> None:
    """Images of each visibility owned by p1, by p2 and (public) by nobody."""
    registry, clock = db.registry, db.clock
    for owner in ("p1", "p2"):
        for visibility in ("private", "shared", "public", "community"):
            registry.create({"name": f"{owner}-{visibility}", "owner": owner,
                             "visibility": visibility})
            clock.advance()
    registry.create({"name": "nobody-public", "visibility": "public"})


@pytest.fixture
def estate(populated: Any) -> ImageRegistry:
    return populated(fill_estate).registry


ALL = {f"{o}-{v}" for o in ("p1", "p2") for v in ("private", "shared", "public",
                                                  "community")} | {"nobody-public"}
PUBLIC = {"p1-public", "p2-public", "nobody-public"}


@pytest.mark.parametrize(("viewer", "visibility", "expected"), [
    # admins see every project's images, community ones only when asked or their own
    (ADMIN, None, ALL - {"p1-community", "p2-community"}),
    (Viewer("p1", is_admin=True), None, ALL - {"p2-community"}),
    (ADMIN, "community", {"p1-community", "p2-community"}),
    (ADMIN, "private", {"p1-private", "p2-private"}),
    (ADMIN, "all", ALL),
    (Viewer(None, is_admin=True), None, ALL - {"p1-community", "p2-community"}),
    # owners see their own and the public images; community ones only when asked
    (Viewer("p1"), None, {"p1-private", "p1-shared", "p1-community"} | PUBLIC),
    (Viewer("p1"), "community", {"p1-community", "p2-community"}),
    (Viewer("p1"), "public", PUBLIC),
    (Viewer("p1"), "private", {"p1-private"}),
    (Viewer("p1"), "shared", {"p1-shared"}),
    (Viewer("p1"), "all", ALL - {"p2-private", "p2-shared"}),
    (Viewer("p2"), None, {"p2-private", "p2-shared", "p2-community"} | PUBLIC),
    # a project without images, and a request without one
    (Viewer("p3"), None, PUBLIC),
    (Viewer("p3"), "community", {"p1-community", "p2-community"}),
    (Viewer("p3"), "private", set()),
    (Viewer(None), None, PUBLIC),
    (Viewer(None), "all", PUBLIC | {"p1-community", "p2-community"}),
])
def test_visibility_scoping(
    estate: ImageRegistry, viewer: Viewer, visibility: str | None,
    expected: set[str]
) -> None:
    filters = () if visibility is None else (Filter("visibility", "eq", visibility),)
    assert listed(estate, viewer, filters=filters) == expected


def test_marker_must_be_visible(estate: ImageRegistry) -> None:
    registry = estate
    others = registry.list(ImageQuery(viewer=Viewer("p2"), limit=1000))
    by_name = {r.name: r.id for r in others}
    with pytest.raises(BadRequest, match="marker"):
        registry.list(ImageQuery(viewer=Viewer("p1"), marker=by_name["p2-private"]))
    # community and public images are visible to all, so they make valid markers
    registry.list(ImageQuery(viewer=Viewer("p1"), marker=by_name["p2-community"]))
    registry.list(ImageQuery(viewer=Viewer("p1"), marker=by_name["p2-public"]))


# -- sorting and pages --------------------------------------------------------------------------


def fill_crowd(db: Populated) -> None:
    """41 images; several per created_at second; NULL and mixed-case names; NULL sizes."""
    registry, clock = db.registry, db.clock
    names_ = [None, "", "a", "B", "b", "Zeta", "alpha", "ÉCLAIR", "écl", "z", "10", "9"]
    for i in range(41):
        if i % 6 == 0:
            clock.advance()
        values = {
            "name": names_[i % len(names_)],
            "status": ("active", "queued", "killed")[i % 3],
            "visibility": ("public", "private")[i % 2],
            "owner": (None, "p1", "P1", "p2", "p1")[i % 5],
            "size": None if i % 5 == 0 else (i * 7919) % 23,
            "virtual_size": None if i % 7 == 0 else i % 4,
            "container_format": (None, "bare", "ovf")[i % 3],
            "disk_format": (None, "raw", "qcow2", "iso")[i % 4],
            "min_disk": i % 3,
            "min_ram": (i * 31) % 5,
        }
        image = registry.create(values)
        if i % 9 == 0:
            clock.advance(2)
            image = registry.update(image.id, {"min_disk": 7})
        db.images[image.id] = image


@pytest.fixture
def crowd(populated: Any) -> Populated:
    return populated(fill_crowd)


_SENTINEL = {"name": "", "owner": "", "container_format": "", "disk_format": "",
             "size": -1, "virtual_size": -1}


def reference_order(
    records: Sequence[ImageRecord], sort: Sequence[tuple[str, str]]
) -> list[ImageRecord]:
    """What the registry must return: NULLs as the smallest value, code-point string order,
    then created_at and id in the common direction (desc when directions differ)."""
    sort = list(sort)
    dirs = {d for _, d in sort}
    default = dirs.pop() if len(dirs) == 1 else "desc"
    for key in ("created_at", "id"):
        if key not in [k for k, _ in sort]:
            sort.append((key, default))

    def value(r: ImageRecord, key: str) -> Any:
        v = getattr(r, key)
        return _SENTINEL.get(key) if v is None else v

    def compare(a: ImageRecord, b: ImageRecord) -> int:
        for key, direction in sort:
            va, vb = value(a, key), value(b, key)
            if va != vb:
                return (-1 if va < vb else 1) * (1 if direction == "asc" else -1)
        return 0

    return sorted(records, key=functools.cmp_to_key(compare))


SORTS = [((key, direction),) for key in SORT_KEYS for direction in ("asc", "desc")] + [
    (("status", "asc"), ("name", "desc")),
    (("disk_format", "desc"), ("size", "asc")),
    (("owner", "asc"), ("visibility", "desc"), ("min_ram", "asc")),
    (("updated_at", "desc"), ("name", "asc")),
    (("created_at", "asc"), ("id", "desc")),
    (("id", "asc"), ("name", "desc")),
    (("size", "desc"), ("virtual_size", "desc"), ("container_format", "desc")),
    (),
]


def _sort_id(sort: tuple[tuple[str, str], ...]) -> str:
    return ",".join(f"{k}:{d}" for k, d in sort) or "default"


def pages(registry: ImageRegistry, query: ImageQuery) -> list[list[ImageRecord]]:
    """Follow markers from the first page until an empty one."""
    out: list[list[ImageRecord]] = []
    marker = None
    while True:
        page = registry.list(dataclasses.replace(query, marker=marker))
        assert len(page) <= query.limit
        if not page:
            return out
        out.append(page)
        marker = page[-1].id
        assert len(out) < 200, "paging does not end"


@pytest.mark.parametrize("sort", SORTS, ids=[_sort_id(s) for s in SORTS])
def test_sort_and_pages(
    crowd: Populated, sort: tuple[tuple[str, str], ...]
) -> None:
    registry = crowd.registry
    expected = reference_order(list(crowd.images.values()), sort)
    kwargs = {"sort": sort} if sort else {}
    whole = registry.list(ImageQuery(viewer=ADMIN, limit=1000, **kwargs))
    assert [r.id for r in whole] == [r.id for r in expected]
    for limit in (3, 16):
        paged = pages(registry, ImageQuery(viewer=ADMIN, limit=limit, **kwargs))
        assert all(len(p) == limit for p in paged[:-1])
        assert [r.id for r in itertools.chain(*paged)] == [r.id for r in expected]


@pytest.mark.parametrize("sort", [(), (("name", "asc"),), (("size", "desc"), ("name", "asc")),
                                  (("created_at", "asc"),)], ids=_sort_id)
@pytest.mark.parametrize("viewer", [Viewer("p1"), Viewer("p2"), Viewer(None)],
                         ids=lambda v: str(v.project_id))
def test_owner_scoped_pages(
    crowd: Populated, sort: tuple[tuple[str, str], ...],
    viewer: Viewer
) -> None:
    """A non-admin page is merged from several seeks: it pages the same way."""
    registry = crowd.registry
    mine = [r for r in crowd.images.values() if r.owner == viewer.project_id and viewer.project_id
            or r.visibility == "public"]
    expected = [r.id for r in reference_order(mine, sort)]
    kwargs = {"sort": sort} if sort else {}
    assert [r.id for r in registry.list(ImageQuery(viewer=viewer, limit=1000, **kwargs))] == (
        expected)
    paged = pages(registry, ImageQuery(viewer=viewer, limit=4, **kwargs))
    assert [r.id for r in itertools.chain(*paged)] == expected


def test_many_images_in_one_second(registry: ImageRegistry) -> None:
    """Ties in created_at are broken by id: 60 images of one second page without a gap."""
    made = {registry.create({"name": f"n{i}"}).id for i in range(60)}
    paged = pages(registry, ImageQuery(viewer=ADMIN, limit=25))
    ids = [r.id for r in itertools.chain(*paged)]
    assert [len(p) for p in paged] == [25, 25, 10]
    assert ids == sorted(made, reverse=True)


def test_limit(crowd: Populated) -> None:
    registry = crowd.registry
    assert registry.list(ImageQuery(viewer=ADMIN, limit=0)) == []
    assert len(registry.list(ImageQuery(viewer=ADMIN, limit=5))) == 5
    with pytest.raises(BadRequest, match="limit"):
        registry.list(ImageQuery(viewer=ADMIN, limit=-1))


def test_records_carry_properties_and_tags(registry: ImageRegistry) -> None:
    registry.create({"name": "a"}, {"k": "v"}, ["t2", "t1"])
    [record] = registry.list(ImageQuery(viewer=ADMIN))
    assert record.properties == {"k": "v"} and record.tags == ("t1", "t2")


@pytest.mark.parametrize("sort", [(("checksum", "asc"),), (("location", "desc"),),
                                  (("name", "up"),), (("name", ""),)])
def test_bad_sort_is_bad_request(registry: ImageRegistry, sort: tuple[tuple[str, str]]) -> None:
    with pytest.raises(BadRequest, match="sort"):
        registry.list(ImageQuery(viewer=ADMIN, sort=sort))


def test_bad_marker_is_bad_request(registry: ImageRegistry) -> None:
    registry.create({"name": "kept"})
    with pytest.raises(BadRequest, match="marker"):
        registry.list(ImageQuery(viewer=ADMIN, marker="no-such-image"))
    deleted = registry.delete(registry.create({"name": "deleted"}).id)
    with pytest.raises(BadRequest, match="marker"):
        registry.list(ImageQuery(viewer=ADMIN, marker=deleted.id))

"""The registry's tables. Changes to them go through an alembic migration (migrations/).

SQLAlchemy Core ``Table``s, not ORM classes: the registry reads and writes with Core
statements only, and the ORM alone would add ~5.6 MiB to every server process.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeEngine

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)

MYSQL_BINARY = "utf8mb4_bin"  # implies CHARACTER SET utf8mb4 (MySQL and MariaDB)
POSTGRESQL_BINARY = "C"


def Str(length: int | None = None) -> TypeEngine[str]:  # noqa: N802  (reads like a type)
    """A string compared and sorted by code point on every database.

    SQLite compares bytes; MySQL/MariaDB default to case-insensitive collations (tags ``Foo``
    and ``foo`` would collide, ``name=foo`` would match ``Foo``) and PostgreSQL sorts by the
    database's locale. Binary collations make filters exact and sorts identical everywhere.
    The variants are generic types with a collation, not ``sqlalchemy.dialects.mysql`` or
    ``postgresql`` types: they render the same ``COLLATE`` (the migrations, which create the
    tables, use the dialects' types) without importing two dialects (~3.4 MiB) into a server
    that talks to one database, or none of them on SQLite.
    """
    base: TypeEngine[str] = Text() if length is None else String(length)

    def collated(collation: str) -> TypeEngine[str]:
        return Text(collation=collation) if length is None else String(length, collation=collation)

    return base.with_variant(collated(MYSQL_BINARY), "mysql", "mariadb").with_variant(
        collated(POSTGRESQL_BINARY), "postgresql")


def _required(name: str, type_: TypeEngine[object], *args: object, **kw: object) -> Column[object]:
    """A NOT NULL column (every column not marked optional below)."""
    return Column(name, type_, *args, nullable=False, **kw)  # type: ignore[misc]


def _optional(name: str, type_: TypeEngine[object]) -> Column[object]:
    return Column(name, type_, nullable=True)


def _image_id() -> Column[object]:
    """The key of a row that belongs to one image, deleted with it."""
    return Column("image_id", Str(36), ForeignKey("images.id", ondelete="CASCADE"),
                  primary_key=True)


images = Table(
    "images", metadata,
    Column("id", Str(36), primary_key=True),
    _optional("name", Str(255)),
    _required("status", Str(30)),
    _required("visibility", Str(20)),
    _optional("owner", Str(255)),
    _optional("size", BigInteger()),
    _optional("virtual_size", BigInteger()),
    _optional("disk_format", Str(20)),
    _optional("container_format", Str(20)),
    _optional("checksum", Str(32)),
    _optional("os_hash_algo", Str(64)),
    _optional("os_hash_value", Str(128)),
    # internal: xxh3-128 of the data, for cache and replica verification
    _optional("xxh3", Str(32)),
    # where the data lives: image_locations
    _required("min_disk", Integer(), default=0),
    _required("min_ram", Integer(), default=0),
    _required("protected", Boolean(), default=False),
    _required("os_hidden", Boolean(), default=False),
    _required("created_at", DateTime()),
    _required("updated_at", DateTime()),
    # the default listing order (created_at desc, id desc) and marker seeks use these
    Index("ix_images_created_at_id", "created_at", "id"),
    Index("ix_images_updated_at_id", "updated_at", "id"),
    # a project's own images, and the public ones, in the default order (see
    # ImageRegistry.list: a non-admin page is merged from one seek in each)
    Index("ix_images_owner_created_at_id", "owner", "created_at", "id"),
    Index("ix_images_visibility_created_at_id", "visibility", "created_at", "id"),
    Index("ix_images_name", "name"),
    Index("ix_images_status", "status"),
    Index("ix_images_checksum", "checksum"),
)

# A custom (non-core) image property: key/value strings, as in Glance.
def integer_range(column: str) -> tuple[int, int]:
    """The values an integer column of ``images`` can hold: PostgreSQL and MariaDB fail a
    query that compares the column with anything beyond them (SQLite would not)."""
    bits = 64 if isinstance(images.c[column].type, BigInteger) else 32
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


image_properties = Table(
    "image_properties", metadata,
    _image_id(),
    Column("name", Str(255), primary_key=True),
    _required("value", Str()),
    Index("ix_image_properties_name", "name"),
)

image_tags = Table(
    "image_tags", metadata,
    _image_id(),
    Column("value", Str(255), primary_key=True),
    Index("ix_image_tags_value", "value"),
)

# One copy of an image's data: ``location`` in the store ``store`` (Glance's multi-store).
# Internal, never shown to API users. The primary key (image_id, store) is both the rule
# "one copy per store" and the index an image's copies are read through; ``store`` leads a
# second index, for sweeps of one store's images.
image_locations = Table(
    "image_locations", metadata,
    _image_id(),
    Column("store", Str(255), primary_key=True),
    _required("location", Str(2048)),
    _required("created_at", DateTime()),
    Index("ix_image_locations_store_image_id", "store", "image_id"),
)

# A project a ``shared`` image is offered to, and what that project answered. ``status`` is
# ``pending`` until the member accepts or rejects the offer; only accepted images appear in
# the member's default listing (see ImageRegistry.list).
image_members = Table(
    "image_members", metadata,
    _image_id(),
    Column("member_id", Str(255), primary_key=True),
    _required("status", Str(20)),
    _required("created_at", DateTime()),
    _required("updated_at", DateTime()),
    # a project's memberships by status: the seek behind the images shared with it
    Index("ix_image_members_member_id_status_image_id", "member_id", "status", "image_id"),
)

# An asynchronous operation (Glance's tasks; today image imports) and how it ended.
# ``input`` and ``result`` are JSON documents, as Glance shows them; ``message`` says why a
# task failed. Tasks outlive their image (no foreign key), as in Glance.
tasks = Table(
    "tasks", metadata,
    Column("id", Str(36), primary_key=True),
    _required("type", Str(30)),
    _required("status", Str(30)),
    _optional("owner", Str(255)),
    _optional("image_id", Str(36)),
    _optional("user_id", Str(255)),
    _optional("request_id", Str(64)),
    _required("input", Str()),
    _optional("result", Str()),
    _required("message", Str()),
    _optional("expires_at", DateTime()),
    _required("created_at", DateTime()),
    _required("updated_at", DateTime()),
    # GET /v2/tasks in its default order, and GET /v2/images/{id}/tasks
    Index("ix_tasks_created_at_id", "created_at", "id"),
    Index("ix_tasks_image_id_created_at", "image_id", "created_at"),
    # start-up finds the tasks a crash left running
    Index("ix_tasks_status", "status"),
)

# A claim on a piece of work (``upload:<image_id>``…) by one API node, until ``expires_at``.
# The node renews it while it works; another node may take the work over (repair it) only
# once the lease has expired. See streamd.registry.leases.
leases = Table(
    "leases", metadata,
    Column("key", Str(255), primary_key=True),
    _required("holder", Str(255)),
    _required("expires_at", DateTime()),
    _required("acquired_at", DateTime()),
    # the sweep for expired leases
    Index("ix_leases_expires_at", "expires_at"),
)

# -- metadata definitions (Glance's metadefs) ----------------------------------------------------
# Integer ids, as Glance's: the API names every row by its name, never by its id; the ids
# only break ties in the listing order and join the tables.


def _id() -> Column[object]:
    return Column("id", Integer(), primary_key=True, autoincrement=True)


def _namespace_id(**fk: str) -> Column[object]:
    """The namespace a row belongs to, deleted with it."""
    return _required("namespace_id", Integer(),
                     ForeignKey("metadef_namespaces.id", ondelete="CASCADE", **fk))


# A namespace of metadata definitions: its properties, objects, tags and the resource types
# it applies to (the other ``metadef_*`` tables, deleted with it).
metadef_namespaces = Table(
    "metadef_namespaces", metadata,
    _id(),
    _required("namespace", Str(80), unique=True),
    _optional("display_name", Str(80)),
    _optional("description", Str()),
    _required("visibility", Str(32)),
    _required("protected", Boolean(), default=False),
    _optional("owner", Str(255)),
    _required("created_at", DateTime()),
    _required("updated_at", DateTime()),
    # the default listing order (created_at desc, id desc): a page is an index seek, for
    # admins; a project's own and the public namespaces are each a seek of their own
    Index("ix_metadef_namespaces_created_at_id", "created_at", "id"),
    Index("ix_metadef_namespaces_owner_created_at_id", "owner", "created_at", "id"),
    Index("ix_metadef_namespaces_visibility_created_at_id", "visibility", "created_at", "id"),
)

# A kind of resource (``OS::Nova::Flavor``…) namespaces apply to; made on first use.
metadef_resource_types = Table(
    "metadef_resource_types", metadata,
    _id(),
    _required("name", Str(80), unique=True),
    _required("protected", Boolean(), default=False),
    _required("created_at", DateTime()),
    _required("updated_at", DateTime()),
)

# A namespace applies to a resource type, its properties named with ``prefix``. ``id`` keeps
# the order they were made in, which is the order Glance shows them in.
metadef_namespace_resource_types = Table(
    "metadef_namespace_resource_types", metadata,
    _id(),
    # (names of their own: the convention's would pass PostgreSQL's 63 characters)
    _namespace_id(name="fk_metadef_ns_resource_types_namespace_id"),
    _required("resource_type_id", Integer(),
              ForeignKey("metadef_resource_types.id",
                         name="fk_metadef_ns_resource_types_resource_type_id")),
    _optional("prefix", Str(80)),
    _optional("properties_target", Str(80)),
    _required("created_at", DateTime()),
    _required("updated_at", DateTime()),
    UniqueConstraint("namespace_id", "resource_type_id",
                     name="uq_metadef_ns_resource_types_namespace_id"),
    # the namespaces of some resource types (the listing's resource_types filter)
    Index("ix_metadef_namespace_resource_types_resource_type_id", "resource_type_id",
          "namespace_id"),
)

# A property definition: ``json_schema`` is its JSON Schema fragment, as JSON text.
metadef_properties = Table(
    "metadef_properties", metadata,
    _id(),
    _namespace_id(),
    _required("name", Str(80)),
    _required("json_schema", Str()),
    _required("created_at", DateTime()),
    _required("updated_at", DateTime()),
    UniqueConstraint("namespace_id", "name"),
)

# An object definition: a named group of properties (``json_schema``, JSON text) and which
# of them are ``required`` (a JSON list).
metadef_objects = Table(
    "metadef_objects", metadata,
    _id(),
    _namespace_id(),
    _required("name", Str(80)),
    _optional("description", Str()),
    _optional("required", Str()),
    _required("json_schema", Str()),
    _required("created_at", DateTime()),
    _required("updated_at", DateTime()),
    UniqueConstraint("namespace_id", "name"),
)

metadef_tags = Table(
    "metadef_tags", metadata,
    _id(),
    _namespace_id(),
    _required("name", Str(80)),
    _required("created_at", DateTime()),
    _required("updated_at", DateTime()),
    UniqueConstraint("namespace_id", "name"),
)

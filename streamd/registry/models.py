"""The registry's tables. Changes to them go through an alembic migration (migrations/)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeEngine

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}




def Str(length: int | None = None) -> TypeEngine[str]:  # noqa: N802  (reads like a type)
    """A string compared and sorted by code point on every database.

    SQLite compares bytes; MySQL/MariaDB default to case-insensitive collations (tags ``Foo``
    and ``foo`` would collide, ``name=foo`` would match ``Foo``) and PostgreSQL sorts by the
    database's locale. Binary collations make filters exact and sorts identical everywhere.
    """
    if length is None:
        return Text().with_variant(
            mysql.TEXT(charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
        ).with_variant(postgresql.TEXT(collation="C"), "postgresql")
    return String(length).with_variant(
        mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
    ).with_variant(postgresql.VARCHAR(length, collation="C"), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Image(Base):
    __tablename__ = "images"

    id: Mapped[str] = mapped_column(Str(36), primary_key=True)
    name: Mapped[str | None] = mapped_column(Str(255))
    status: Mapped[str] = mapped_column(Str(30))
    visibility: Mapped[str] = mapped_column(Str(20))
    owner: Mapped[str | None] = mapped_column(Str(255))
    size: Mapped[int | None] = mapped_column(BigInteger)
    virtual_size: Mapped[int | None] = mapped_column(BigInteger)
    disk_format: Mapped[str | None] = mapped_column(Str(20))
    container_format: Mapped[str | None] = mapped_column(Str(20))
    checksum: Mapped[str | None] = mapped_column(Str(32))
    os_hash_algo: Mapped[str | None] = mapped_column(Str(64))
    os_hash_value: Mapped[str | None] = mapped_column(Str(128))
    # internal: xxh3-128 of the data, for cache and replica verification
    xxh3: Mapped[str | None] = mapped_column(Str(32))
    # where the data lives: image_locations
    min_disk: Mapped[int] = mapped_column(Integer, default=0)
    min_ram: Mapped[int] = mapped_column(Integer, default=0)
    protected: Mapped[bool] = mapped_column(Boolean, default=False)
    os_hidden: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)

    __table_args__ = (
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


class ImageProperty(Base):
    """A custom (non-core) image property: key/value strings, as in Glance."""

    __tablename__ = "image_properties"

    image_id: Mapped[str] = mapped_column(
        Str(36), ForeignKey("images.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(Str(255), primary_key=True)
    value: Mapped[str] = mapped_column(Str())

    __table_args__ = (Index("ix_image_properties_name", "name"),)


class ImageTag(Base):
    __tablename__ = "image_tags"

    image_id: Mapped[str] = mapped_column(
        Str(36), ForeignKey("images.id", ondelete="CASCADE"), primary_key=True
    )
    value: Mapped[str] = mapped_column(Str(255), primary_key=True)

    __table_args__ = (Index("ix_image_tags_value", "value"),)


class ImageLocation(Base):
    """One copy of an image's data: ``location`` in the store ``store`` (Glance's multi-store).

    Internal, never shown to API users. The primary key (image_id, store) is both the rule
    "one copy per store" and the index an image's copies are read through; ``store`` leads a
    second index, for sweeps of one store's images.
    """

    __tablename__ = "image_locations"

    image_id: Mapped[str] = mapped_column(
        Str(36), ForeignKey("images.id", ondelete="CASCADE"), primary_key=True
    )
    store: Mapped[str] = mapped_column(Str(255), primary_key=True)
    location: Mapped[str] = mapped_column(Str(2048))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)

    __table_args__ = (Index("ix_image_locations_store_image_id", "store", "image_id"),)


class ImageMember(Base):
    """A project a ``shared`` image is offered to, and what that project answered.

    ``status`` is ``pending`` until the member accepts or rejects the offer; only accepted
    images appear in the member's default listing (see ImageRegistry.list).
    """

    __tablename__ = "image_members"

    image_id: Mapped[str] = mapped_column(
        Str(36), ForeignKey("images.id", ondelete="CASCADE"), primary_key=True
    )
    member_id: Mapped[str] = mapped_column(Str(255), primary_key=True)
    status: Mapped[str] = mapped_column(Str(20))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)

    __table_args__ = (
        # a project's memberships by status: the seek behind the images shared with it
        Index("ix_image_members_member_id_status_image_id", "member_id", "status", "image_id"),
    )


class Task(Base):
    """An asynchronous operation (Glance's tasks; today image imports) and how it ended.

    ``input`` and ``result`` are JSON documents, as Glance shows them; ``message`` says why
    a task failed. Tasks outlive their image (no foreign key), as in Glance.
    """

    __tablename__ = "tasks"

    id: Mapped[str] = mapped_column(Str(36), primary_key=True)
    type: Mapped[str] = mapped_column(Str(30))
    status: Mapped[str] = mapped_column(Str(30))
    owner: Mapped[str | None] = mapped_column(Str(255))
    image_id: Mapped[str | None] = mapped_column(Str(36))
    user_id: Mapped[str | None] = mapped_column(Str(255))
    request_id: Mapped[str | None] = mapped_column(Str(64))
    input: Mapped[str] = mapped_column(Str())
    result: Mapped[str | None] = mapped_column(Str())
    message: Mapped[str] = mapped_column(Str())
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)

    __table_args__ = (
        # GET /v2/tasks in its default order, and GET /v2/images/{id}/tasks
        Index("ix_tasks_created_at_id", "created_at", "id"),
        Index("ix_tasks_image_id_created_at", "image_id", "created_at"),
        # start-up finds the tasks a crash left running
        Index("ix_tasks_status", "status"),
    )


class Lease(Base):
    """A claim on a piece of work (``upload:<image_id>``…) by one API node, until ``expires_at``.

    The node renews it while it works; another node may take the work over (repair it) only
    once the lease has expired. See streamd.registry.leases.
    """

    __tablename__ = "leases"

    key: Mapped[str] = mapped_column(Str(255), primary_key=True)
    holder: Mapped[str] = mapped_column(Str(255))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)
    acquired_at: Mapped[dt.datetime] = mapped_column(DateTime)

    # the sweep for expired leases
    __table_args__ = (Index("ix_leases_expires_at", "expires_at"),)


# -- metadata definitions (Glance's metadefs) ----------------------------------------------------
# Integer ids, as Glance's: the API names every row by its name, never by its id; the ids
# only break ties in the listing order and join the tables.


class MetadefNamespace(Base):
    """A namespace of metadata definitions: its properties, objects, tags and the resource
    types it applies to (the other ``metadef_*`` tables, deleted with it)."""

    __tablename__ = "metadef_namespaces"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    namespace: Mapped[str] = mapped_column(Str(80), unique=True)
    display_name: Mapped[str | None] = mapped_column(Str(80))
    description: Mapped[str | None] = mapped_column(Str())
    visibility: Mapped[str] = mapped_column(Str(32))
    protected: Mapped[bool] = mapped_column(Boolean, default=False)
    owner: Mapped[str | None] = mapped_column(Str(255))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)

    __table_args__ = (
        # the default listing order (created_at desc, id desc): a page is an index seek, for
        # admins; a project's own and the public namespaces are each a seek of their own
        Index("ix_metadef_namespaces_created_at_id", "created_at", "id"),
        Index("ix_metadef_namespaces_owner_created_at_id", "owner", "created_at", "id"),
        Index("ix_metadef_namespaces_visibility_created_at_id", "visibility", "created_at",
              "id"),
    )


class MetadefResourceType(Base):
    """A kind of resource (``OS::Nova::Flavor``…) namespaces apply to; made on first use."""

    __tablename__ = "metadef_resource_types"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(Str(80), unique=True)
    protected: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)


class MetadefNamespaceResourceType(Base):
    """A namespace applies to a resource type, its properties named with ``prefix``.

    ``id`` keeps the order they were made in, which is the order Glance shows them in."""

    __tablename__ = "metadef_namespace_resource_types"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # (names of their own: the convention's would pass PostgreSQL's 63 characters)
    namespace_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("metadef_namespaces.id", ondelete="CASCADE",
                            name="fk_metadef_ns_resource_types_namespace_id"))
    resource_type_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("metadef_resource_types.id",
                            name="fk_metadef_ns_resource_types_resource_type_id"))
    prefix: Mapped[str | None] = mapped_column(Str(80))
    properties_target: Mapped[str | None] = mapped_column(Str(80))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)

    __table_args__ = (
        UniqueConstraint("namespace_id", "resource_type_id",
                         name="uq_metadef_ns_resource_types_namespace_id"),
        # the namespaces of some resource types (the listing's resource_types filter)
        Index("ix_metadef_namespace_resource_types_resource_type_id", "resource_type_id",
              "namespace_id"),
    )


class MetadefProperty(Base):
    """A property definition: ``json_schema`` is its JSON Schema fragment, as JSON text."""

    __tablename__ = "metadef_properties"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    namespace_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("metadef_namespaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(Str(80))
    json_schema: Mapped[str] = mapped_column(Str())
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)

    __table_args__ = (UniqueConstraint("namespace_id", "name"),)


class MetadefObject(Base):
    """An object definition: a named group of properties (``json_schema``, JSON text) and
    which of them are ``required`` (a JSON list)."""

    __tablename__ = "metadef_objects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    namespace_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("metadef_namespaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(Str(80))
    description: Mapped[str | None] = mapped_column(Str())
    required: Mapped[str | None] = mapped_column(Str())
    json_schema: Mapped[str] = mapped_column(Str())
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)

    __table_args__ = (UniqueConstraint("namespace_id", "name"),)


class MetadefTag(Base):
    __tablename__ = "metadef_tags"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    namespace_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("metadef_namespaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(Str(80))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)

    __table_args__ = (UniqueConstraint("namespace_id", "name"),)

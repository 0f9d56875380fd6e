"""The metadata registry: SQLAlchemy tables, queries and status changes. Never sees image data."""

from streamd.registry.images import ImageRegistry, utcnow
from streamd.registry.leases import LeaseHolder, LeaseRegistry
from streamd.registry.members import MEMBER_STATUSES, MemberRegistry
from streamd.registry.models import integer_range
from streamd.registry.records import (
    Filter,
    ImageQuery,
    ImageRecord,
    MemberRecord,
    StoredCopy,
    Usage,
    Viewer,
)
from streamd.registry.schema import (
    SchemaOutOfDate,
    ensure_current,
    make_engine,
    make_loop_engine,
    upgrade,
)
from streamd.registry.usage import project_usage

__all__ = [
    "MEMBER_STATUSES",
    "Filter",
    "ImageQuery",
    "ImageRecord",
    "ImageRegistry",
    "LeaseHolder",
    "LeaseRegistry",
    "MemberRecord",
    "MemberRegistry",
    "SchemaOutOfDate",
    "StoredCopy",
    "Usage",
    "Viewer",
    "integer_range",
    "ensure_current",
    "make_engine",
    "make_loop_engine",
    "project_usage",
    "upgrade",
    "utcnow",
]

"""The metadata registry: SQLAlchemy tables, queries and status changes. Never sees image data."""

from streamd.registry.images import ImageRegistry, utcnow
from streamd.registry.records import Filter, ImageQuery, ImageRecord, Viewer
from streamd.registry.schema import SchemaOutOfDate, ensure_current, make_engine, upgrade

__all__ = [
    "Filter",
    "ImageQuery",
    "ImageRecord",
    "ImageRegistry",
    "SchemaOutOfDate",
    "Viewer",
    "ensure_current",
    "make_engine",
    "upgrade",
    "utcnow",
]

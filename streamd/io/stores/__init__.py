"""Image data stores: one protocol (``base``), one module per backend.

The stores that call out over HTTP (``http``, ``swift``, ``s3``) are imported from their
modules by whoever configures one (``streamd.service.stores``), so a server without them
never loads httpx or boto3.
"""

from streamd.io.stores.base import (
    LinkingStore,
    LocalFileStore,
    OpenFile,
    Store,
    StoreCapabilities,
    StoredObject,
    SweepingStore,
    can_link,
    can_sweep,
    has_local_files,
)
from streamd.io.stores.counting import CountingStore
from streamd.io.stores.file import FileStore
from streamd.io.stores.memory import MemoryStore
from streamd.io.stores.throttled import ThrottledStore

__all__ = [
    "CountingStore",
    "FileStore",
    "LinkingStore",
    "LocalFileStore",
    "MemoryStore",
    "OpenFile",
    "Store",
    "StoreCapabilities",
    "StoredObject",
    "SweepingStore",
    "ThrottledStore",
    "can_link",
    "can_sweep",
    "has_local_files",
]

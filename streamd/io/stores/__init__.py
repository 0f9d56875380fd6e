"""Image data stores: one protocol (``base``), one module per backend."""

from streamd.io.stores.base import LinkingStore, Store, StoreCapabilities, StoredObject, can_link
from streamd.io.stores.file import FileStore
from streamd.io.stores.http import HttpStore
from streamd.io.stores.memory import MemoryStore
from streamd.io.stores.throttled import ThrottledStore

__all__ = [
    "FileStore",
    "HttpStore",
    "LinkingStore",
    "MemoryStore",
    "Store",
    "StoreCapabilities",
    "StoredObject",
    "ThrottledStore",
    "can_link",
]

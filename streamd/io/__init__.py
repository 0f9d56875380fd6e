"""The data plane: bytes in, bytes out, hashed on the way; no HTTP, no SQL, no registry."""

from streamd.io.buffers import BufferBudget, BufferPool
from streamd.io.errors import (
    ObjectNotFound,
    SizeCapExceeded,
    SizeMismatch,
    SourceAborted,
    StoreError,
    StoreFull,
)
from streamd.io.pipeline import ByteSource, UploadResult, store_stream
from streamd.io.posix import ignore_sigxfsz
from streamd.io.ranges import parse_byte_range, resolve_range
from streamd.io.sources import BytesSource, FileSource, ZeroSource
from streamd.io.stores import (
    FileStore,
    LinkingStore,
    LocalFileStore,
    MemoryStore,
    OpenFile,
    Store,
    StoreCapabilities,
    StoredObject,
    SweepingStore,
    ThrottledStore,
    can_link,
    can_sweep,
    has_local_files,
)

__all__ = [
    "BufferBudget",
    "BufferPool",
    "ByteSource",
    "BytesSource",
    "FileSource",
    "FileStore",
    "LinkingStore",
    "LocalFileStore",
    "MemoryStore",
    "OpenFile",
    "ObjectNotFound",
    "SizeCapExceeded",
    "SizeMismatch",
    "SourceAborted",
    "Store",
    "StoreCapabilities",
    "StoreError",
    "StoreFull",
    "StoredObject",
    "SweepingStore",
    "ThrottledStore",
    "UploadResult",
    "ZeroSource",
    "can_link",
    "can_sweep",
    "has_local_files",
    "ignore_sigxfsz",
    "parse_byte_range",
    "resolve_range",
    "store_stream",
]

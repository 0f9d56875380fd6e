"""The data plane's errors, each a subclass of a shared ``streamd.errors`` class.

Subclassing is what lets the HTTP layer map them without knowing the data plane: it maps the
shared base class to a status code. Messages are written for the API user and never name
paths, locations or internals; the OS error, when there is one, is kept as ``__cause__`` for
the logs. Each docstring says whether retrying the same request can succeed.
"""

from __future__ import annotations

from streamd.errors import (
    BadRequest,
    Gone,
    InsufficientStorage,
    NotFound,
    ServiceUnavailable,
    TooLarge,
)


class StoreFull(InsufficientStorage):
    """The store has no room (ENOSPC, EDQUOT, EFBIG). Retry once space has been freed."""


class ObjectNotFound(NotFound):
    """No object at that location in this store. Retrying will not help."""


class StoreError(ServiceUnavailable):
    """The store failed for a reason that may be transient (I/O error, store down). Retry."""


class StoreReadOnly(Gone):
    """The store only reads (an HTTP store: its locations are URLs someone else wrote), so
    nothing can be written to it. 410, as Glance answers its ``StoreAddDisabled``. Retrying
    will not help; write to another store."""


class SizeCapExceeded(TooLarge):
    """The image is larger than the configured size cap. Retrying will not help."""


class SizeMismatch(BadRequest):
    """The body was shorter or longer than the size announced. Retry with a correct body."""


class SourceAborted(BadRequest):
    """The client stopped sending before the body was complete. Retry the upload."""

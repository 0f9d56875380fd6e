"""How many transfers may run at once, and which uploads are running in this process.

A part of the runtime (``Runtime.transfers``), not of a use case: uploads, downloads and
stages all take a slot, and deleting an image cancels the upload into it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import trio

from streamd.errors import ServiceUnavailable

# seconds: how long a refused client should wait; transfers take seconds to minutes, so a
# shorter hint would mostly bring the same refusal again
RETRY_AFTER = 5


class TransferSlots:
    """Admission control for data transfers, and the uploads running in this process.

    At most ``limit`` transfers run at once; one more is refused with 503 and ``Retry-After``
    instead of waiting, so that a client retries (maybe on another node) rather than hold a
    connection open. ``cancel_upload`` stops an upload into an image being deleted.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0
        self._uploads: dict[str, trio.CancelScope] = {}

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        if self.active >= self.limit:
            raise ServiceUnavailable(
                f"The server is already moving image data for {self.limit} requests, its "
                f"limit (max_transfers); retry in {RETRY_AFTER} seconds.",
                headers={"Retry-After": str(RETRY_AFTER)},
            )
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1

    @contextlib.contextmanager
    def uploading(self, image_id: str) -> Iterator[trio.CancelScope]:
        """A cancel scope for one upload; ``cancel_upload(image_id)`` cancels it."""
        scope = trio.CancelScope()
        self._uploads[image_id] = scope
        try:
            with scope:
                yield scope
        finally:
            if self._uploads.get(image_id) is scope:
                del self._uploads[image_id]

    def cancel_upload(self, image_id: str) -> None:
        scope = self._uploads.get(image_id)
        if scope is not None:
            scope.cancel()

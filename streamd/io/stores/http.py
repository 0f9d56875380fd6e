"""The HTTP store: read-only; a location is an ``http(s)://`` URL that someone else serves.

This is Glance's http store: an image's location may be a URL on a web server, and the
store reads it and tells its size, but never writes or deletes it. ``write`` raises
``StoreReadOnly`` (410, as Glance answers its ``StoreAddDisabled``); ``delete`` does nothing,
as Glance carries on when its http store cannot delete: the URL is not ours to remove.

Unlike Glance's, reads are ranged: ``read`` sends one GET with ``Range: bytes=a-b`` (none
for the whole object) and checks the ``Content-Range`` it gets back. A server that ignores
ranges (200 instead of 206) is read from the start and the prefix discarded, which a log
line says, so the caller still gets exactly the bytes it asked for. ``stat`` asks HEAD and,
when HEAD tells no length, GETs ``bytes=0-0`` and reads the size from ``Content-Range``.
Whether a location still holds what was recorded (size, hash) is the caller's check;
``stat`` gives it the size.

Every request, each redirect hop included, passes the same SSRF filters as web-download
(``streamd.io.url_filter``): a refused hop is never connected to. A location may carry a
user and password (``http://user:pw@host/…``, as Glance allows; sent as Basic auth) or a
signed query, so messages name the store and the host, never a location's path, query or
credentials.
"""

from __future__ import annotations

import logging
import re
import ssl
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import httpx
import trio

from streamd.io.errors import ObjectNotFound, StoreError, StoreReadOnly
from streamd.io.stores.base import StoreCapabilities, StoredObject, check_range
from streamd.io.url_filter import (
    Resolver,
    SourceUnavailable,
    TooManyRedirects,
    UriRefused,
    UrlFilter,
    resolve,
    send_filtered,
)

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5  # as Glance's http store (glance_store/_drivers/http.py MAX_REDIRECTS)
# seconds; a read waits at most ``read`` for each piece of a body, not for the whole of it
TIMEOUT = httpx.Timeout(connect=10.0, read=60.0, write=60.0, pool=60.0)
HEADERS = {
    "Accept-Encoding": "identity",  # the raw bytes are the image: no transfer compression
    "User-Agent": "streamd http store",
}

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED_RANGE = re.compile(r"bytes \*/(\d+)")


class HttpStore:
    """Image data read from web servers; a location is the image's URL."""

    capabilities = StoreCapabilities(
        ranged_reads=True, sparse_writes=False, max_readers=None, max_writers=None,
        read_only=True,
    )

    def __init__(
        self,
        name: str = "http",
        *,
        url_filter: UrlFilter | None = None,
        max_redirects: int = MAX_REDIRECTS,
        timeout: httpx.Timeout = TIMEOUT,
        verify: ssl.SSLContext | bool = True,
        resolver: Resolver = resolve,
    ) -> None:
        """``url_filter`` (default: public hosts on ports 80 and 443 only) checks every
        request and redirect hop; its refusals name this store. ``verify`` as httpx's (an
        ``SSLContext`` for a private CA). ``resolver`` is for tests."""
        if max_redirects < 0:
            raise ValueError("max_redirects must not be negative")
        self.name = name
        self.url_filter = replace(url_filter or UrlFilter(), purpose=f"store {name!r}")
        self.max_redirects = max_redirects
        self._resolver = resolver
        # One pool for every location. Connections are keyed by the checked address, so an
        # https connection may carry requests for two names of one address; each name
        # passed the filters, and the certificate was verified for one of them.
        self._client = httpx.AsyncClient(timeout=timeout, verify=verify,
                                         follow_redirects=False, trust_env=False)

    def __repr__(self) -> str:
        return f"HttpStore(name={self.name!r})"

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    async def check_location(self, location: str) -> None:
        """Raise ``UriRefused`` (400) if the filters refuse ``location``, its host's
        addresses included; for callers about to record a location. ``SourceUnavailable``
        when its host does not resolve now."""
        url = self.url_filter.check(location)
        await self.url_filter.address_for(url, self._resolver)

    # -- the protocol ----------------------------------------------------------------------

    async def write(
        self, chunks: AsyncIterable[memoryview], *, key: str, size: int | None = None
    ) -> StoredObject:
        """Refuse: this store only reads what web servers serve."""
        await trio.lowlevel.checkpoint()
        raise StoreReadOnly(f"store {self.name!r} is read-only: its image data are URLs "
                            "served elsewhere; upload to another store")

    async def read(
        self, location: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[memoryview]:
        """Yield exactly the bytes asked for, from one GET (ranged unless the whole object
        is asked for)."""
        if offset < 0 or (length is not None and length < 0):
            raise ValueError(f"invalid range {offset}+{length}")
        if length == 0:  # no Range header can ask for nothing; still, the object must exist
            check_range(offset, length, await self.stat(location))
            return
        ranged = offset > 0 or length is not None
        headers = {}
        if ranged:
            last = "" if length is None else str(offset + length - 1)
            headers["Range"] = f"bytes={offset}-{last}"
        size: int | None = None
        async with self._send("GET", location, headers) as (response, host):
            status = response.status_code
            if status == 416:
                size = _unsatisfied_size(response)
            elif status in (200, 206):
                self._check_encoding(response, host)
                skip = 0
                if status == 206:
                    count: int | None = self._content_range(response, host, offset, length)
                else:
                    total = _content_length(response)
                    count = length if total is None else check_range(offset, length, total)
                    skip = offset
                    if ranged:
                        log.info("READ store=%s host=%s offset=%d length=%s: the server "
                                 "ignores ranges (200), reading and discarding %d bytes",
                                 self.name, host, offset, length, skip)
                async for data in self._body(response, host, skip, count):
                    yield data
                return
            else:
                self._raise_for(response, host, "read")
        # 416: past the end (a caller bug), or at the very end (nothing to read)
        if size is None:
            size = await self.stat(location)
        if check_range(offset, length, size):
            raise StoreError(f"store {self.name!r}: {host} refused bytes {offset}- of an "
                             f"object of {size} bytes (416)")

    async def delete(self, location: str) -> None:
        """Do nothing: the URL is someone else's (Glance logs and carries on, too)."""
        await trio.lowlevel.checkpoint()
        log.debug("DELETE store=%s: an http location is not ours to delete", self.name)

    async def stat(self, location: str) -> int:
        """The object's size: HEAD's ``Content-Length``, else a one-byte GET's
        ``Content-Range`` (servers that answer HEAD without a length, or refuse it)."""
        async with self._send("HEAD", location, {}) as (response, host):
            status = response.status_code
            if status in (404, 410):
                self._raise_for(response, host, "stat")
            size = _content_length(response) if status == 200 else None
            if size is not None:
                return size
        log.info("STAT store=%s host=%s: HEAD answered %d without a length; asking for "
                 "bytes 0-0", self.name, host, status)
        async with self._send("GET", location, {"Range": "bytes=0-0"}) as (response, host):
            status, size = response.status_code, None
            if status == 206:
                match = _CONTENT_RANGE.fullmatch(response.headers.get("content-range", ""))
                if match and match[3] != "*":
                    return int(match[3])
            elif status == 416:  # an empty object has no byte 0
                size = _unsatisfied_size(response)
            elif status == 200:
                size = _content_length(response)
            else:
                self._raise_for(response, host, "stat")
            if size is None:
                raise StoreError(f"store {self.name!r}: {host} does not tell the size of "
                                 f"this location (answered {status})")
            return size

    # -- HTTP ------------------------------------------------------------------------------

    @asynccontextmanager
    async def _send(
        self, method: str, location: str, headers: dict[str, str]
    ) -> AsyncIterator[tuple[httpx.Response, str]]:
        """The streamed response to ``method location`` through the filters, with the host
        (``name[:port]``) that answered; the store's errors for refusals and failures."""
        try:
            url = httpx.URL(location)
        except (httpx.InvalidURL, ValueError):
            raise StoreError(f"store {self.name!r}: the location is not a URL") from None
        host = url.netloc.decode("ascii", "replace")
        try:
            response, url = await send_filtered(
                self._client, method, self.url_filter.check(location), self.url_filter,
                headers={**HEADERS, **headers}, max_redirects=self.max_redirects,
                resolver=self._resolver)
        except TooManyRedirects as exc:
            raise StoreError(f"store {self.name!r}: {host} redirects more than "
                             f"{self.max_redirects} times") from exc
        except UriRefused as exc:
            raise StoreError(f"store {self.name!r} refuses to fetch this location: "
                             f"{exc.message}") from exc
        except SourceUnavailable as exc:
            cause = exc.__cause__
            if isinstance(cause, httpx.TimeoutException):
                reason = f"no answer in time ({type(cause).__name__})"
            else:
                reason = (str(cause) or type(cause).__name__) if cause else exc.message
            raise StoreError(f"store {self.name!r} could not fetch from {host}: "
                             f"{reason}") from exc
        try:
            yield response, url.netloc.decode("ascii", "replace")
        finally:
            await response.aclose()

    async def _body(
        self, response: httpx.Response, host: str, skip: int, count: int | None
    ) -> AsyncIterator[memoryview]:
        """``count`` bytes (``None``: all) of the body after its first ``skip`` bytes."""
        got = 0
        try:
            async for data in response.aiter_raw():
                view = memoryview(data)
                if skip:
                    n = min(skip, len(view))
                    view, skip = view[n:], skip - n
                if count is not None:
                    view = view[: count - got]
                if view:
                    got += len(view)
                    yield view
                if got == count:
                    return  # a 200 for a range: the rest is not wanted
        except httpx.HTTPError as exc:
            raise StoreError(f"store {self.name!r}: the read from {host} broke off after "
                             f"{got} bytes: {exc or type(exc).__name__}") from exc
        if skip or (count is not None and got < count):
            raise StoreError(f"store {self.name!r}: {host} ended the body early ({got} of "
                             f"{count} bytes)")

    def _content_range(
        self, response: httpx.Response, host: str, offset: int, length: int | None
    ) -> int:
        """How many bytes a 206 carries, once its ``Content-Range`` is the range asked."""
        value = response.headers.get("content-range", "")
        match = _CONTENT_RANGE.fullmatch(value)
        if match is None:
            raise StoreError(f"store {self.name!r}: {host} answered a range with "
                             f"Content-Range {value!r}, not one byte range")
        first, last = int(match[1]), int(match[2])
        total = None if match[3] == "*" else int(match[3])
        if total is not None and length is not None and offset + length > total:
            check_range(offset, length, total)  # the server clipped it: a caller bug
        if length is not None:
            want = offset + length - 1
        else:
            want = last if total is None else total - 1
        if first != offset or last != want or (total is not None and last >= total):
            raise StoreError(f"store {self.name!r}: {host} answered Content-Range {value!r} "
                             f"to a request for bytes {offset}-{'' if length is None else want}")
        declared = _content_length(response)
        if declared is not None and declared != last - first + 1:
            raise StoreError(f"store {self.name!r}: {host} answered {value!r} with "
                             f"Content-Length {declared}")
        return last - first + 1

    def _check_encoding(self, response: httpx.Response, host: str) -> None:
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise StoreError(f"store {self.name!r}: {host} sent the image {encoding}-encoded "
                             "although asked for identity")

    def _raise_for(self, response: httpx.Response, host: str, action: str) -> None:
        status = response.status_code
        if status in (404, 410):
            raise ObjectNotFound(f"no such image data in store {self.name!r}: {host} "
                                 f"answered {status} {response.reason_phrase}")
        raise StoreError(f"store {self.name!r} could not {action}: {host} answered "
                         f"{status} {response.reason_phrase}")


def _content_length(response: httpx.Response) -> int | None:
    value = response.headers.get("content-length", "")
    return int(value) if value.isdigit() else None


def _unsatisfied_size(response: httpx.Response) -> int | None:
    """The size a 416 states (``Content-Range: bytes */N``), if it does."""
    match = _UNSATISFIED_RANGE.fullmatch(response.headers.get("content-range", ""))
    return int(match[1]) if match else None

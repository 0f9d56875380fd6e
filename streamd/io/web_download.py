"""web-download's source: an http(s) URI read as a ``ByteSource``, behind SSRF filters.

A URI a user hands the server makes the server open a connection, so every hop is checked
before it is connected to, by the filters of ``streamd.io.url_filter`` (Glance's scheme,
host and port lists; every resolved address must be global unless its host is trusted; the
connection goes to the address that was checked; redirects followed by hand, at most
``max_redirects``, each hop checked the same way). ``UriFilter`` is that filter with
web-download's words in its refusals.

No proxy from the environment is used (it would connect on our behalf, unchecked). The
body is read raw (``Accept-Encoding: identity``), so ``Content-Length`` is the size of the
image.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from streamd.io.errors import SourceAborted
from streamd.io.url_filter import (
    Resolver,
    SourceUnavailable,
    UriRefused,
    UrlFilter,
    resolve,
    send_filtered,
)

if TYPE_CHECKING:
    import httpx

__all__ = ["SourceUnavailable", "UriFilter", "UriRefused", "WebSource", "open_web_source"]

CONNECT_TIMEOUT = 30.0  # seconds: a host that does not answer by then is not going to
USER_AGENT = "streamd web-download"


@dataclass(frozen=True)
class UriFilter(UrlFilter):
    """Which URIs web-download may fetch: the shared ``UrlFilter``, naming web-download."""

    purpose: str = "web-download"

    def check(self, uri: object) -> httpx.URL:
        """The URI parsed, if its scheme, host and port pass; else ``UriRefused``."""
        if not isinstance(uri, str) or not uri:
            raise UriRefused("web-download needs a 'uri' in the method, e.g. "
                             '{"name": "web-download", "uri": "https://…/image.qcow2"}')
        return super().check(uri)


class WebSource:
    """A fetched response body as a ``ByteSource``; ``content_length`` as announced."""

    def __init__(self, response: httpx.Response, url: httpx.URL) -> None:
        self._response = response
        self._chunks = response.aiter_raw()
        self._pending = memoryview(b"")
        self.url = url
        length = response.headers.get("content-length")
        self.content_length = int(length) if length and length.isdigit() else None
        self.received = 0

    async def readinto(self, buf: memoryview) -> int:
        import httpx  # loaded already: the response came from it

        while not self._pending:
            try:
                chunk = await anext(self._chunks)
            except StopAsyncIteration:
                return 0
            except httpx.HTTPError as exc:
                raise SourceAborted(f"the download from {self.url.host} stopped after "
                                    f"{self.received} bytes: {exc or type(exc).__name__}; "
                                    "retry the import") from exc
            self._pending = memoryview(chunk)
        n = min(len(buf), len(self._pending))
        buf[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        self.received += n
        return n


@asynccontextmanager
async def open_web_source(
    uri: str,
    uri_filter: UriFilter,
    *,
    max_redirects: int = 5,
    read_timeout: float = 60.0,
    resolver: Resolver = resolve,
) -> AsyncIterator[WebSource]:
    """GET ``uri`` (following checked redirects) and yield its body as a ``WebSource``.

    Raises ``UriRefused`` (a hop fails the filters, too many redirects),
    ``SourceUnavailable`` (unreachable, an error status).
    """
    url = uri_filter.check(uri)
    import httpx  # here, not at the top: a server that never calls out does not load it
    timeout = httpx.Timeout(read_timeout, connect=CONNECT_TIMEOUT)
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False,
                                 trust_env=False) as client:
        response, url = await send_filtered(
            client, "GET", url, uri_filter,
            headers={"Accept-Encoding": "identity", "User-Agent": USER_AGENT},
            max_redirects=max_redirects, resolver=resolver,
        )
        try:
            if response.status_code != 200:
                raise SourceUnavailable(f"{url} answered {response.status_code} "
                                        f"{response.reason_phrase}")
            yield WebSource(response, url)
        finally:
            await response.aclose()

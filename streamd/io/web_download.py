"""web-download's source: an http(s) URI read as a ``ByteSource``, behind SSRF filters.

A URI a user hands the server makes the server open a connection, so every hop is checked
before it is connected to (``UriFilter``):

- Glance's filters (``[import_filtering_opts]``): allowed schemes, allowed or disallowed
  hosts, allowed ports; an empty allow-list allows any;
- beyond Glance: the host is resolved, and if *any* of its addresses is loopback, private,
  link-local or otherwise not global (``ipaddress``'s ``is_global``; an IPv4-mapped IPv6
  address counts as its IPv4 address) it is refused, unless the host is listed in
  ``private_hosts`` (``*``: any). The connection then goes to the address that was checked
  (the URL's host is replaced by it, with ``Host`` and TLS SNI/verification still using the
  name), so the name cannot resolve elsewhere between check and connect (DNS rebinding);
- redirects are followed by hand, at most ``max_redirects``, each hop checked the same way.

No proxy from the environment is used (it would connect on our behalf, unchecked). The
body is read raw (``Accept-Encoding: identity``), so ``Content-Length`` is the size of the
image.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import trio

from streamd.errors import BadRequest, ServiceUnavailable
from streamd.io.errors import SourceAborted

DEFAULT_PORTS = {"http": 80, "https": 443}
CONNECT_TIMEOUT = 30.0  # seconds: a host that does not answer by then is not going to
USER_AGENT = "streamd web-download"

Resolver = Callable[[str, int], Awaitable[list[str]]]


class UriRefused(BadRequest):
    """The URI, or a hop it redirects to, is not allowed by the web-download filters.
    Retrying will not help; use another URI (or ask an operator to allow it)."""


class SourceUnavailable(ServiceUnavailable):
    """The URI could not be fetched: unreachable, or answered an error. Retrying may help."""


async def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (an address literal resolves to itself)."""
    infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def non_global_kind(address: str) -> str | None:
    """Why ``address`` is not a public internet address (e.g. "loopback"), or None."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for kind in ("loopback", "link_local", "private", "multicast", "unspecified", "reserved"):
        if getattr(ip, f"is_{kind}"):
            return kind.replace("_", "-")
    return None if ip.is_global else "non-global"


@dataclass(frozen=True)
class UriFilter:
    """Which URIs web-download may fetch (see the module docstring)."""

    allowed_schemes: Sequence[str] = ("http", "https")
    allowed_hosts: Sequence[str] = ()
    disallowed_hosts: Sequence[str] = ()
    allowed_ports: Sequence[int] = (80, 443)
    private_hosts: Sequence[str] = ()

    def check(self, uri: object) -> httpx.URL:
        """The URI parsed, if its scheme, host and port pass; else ``UriRefused``."""
        if not isinstance(uri, str) or not uri:
            raise UriRefused("web-download needs a 'uri' in the method, e.g. "
                             '{"name": "web-download", "uri": "https://…/image.qcow2"}')
        try:
            url = httpx.URL(uri)
        except (httpx.InvalidURL, ValueError):
            raise UriRefused(f"{uri!r} is not a URL") from None
        scheme, host = url.scheme, url.host
        if scheme not in DEFAULT_PORTS or (self.allowed_schemes
                                           and scheme not in self.allowed_schemes):
            allowed = [s for s in self.allowed_schemes if s in DEFAULT_PORTS]
            raise UriRefused(f"scheme {scheme or '(none)'!r} is not allowed; use "
                             f"{' or '.join(allowed) or 'nothing: web-download is disabled'}")
        if not host:
            raise UriRefused("the URI names no host")
        if self.allowed_hosts and host not in self.allowed_hosts:
            raise UriRefused(f"host {host!r} is not one of the allowed hosts")
        if host in self.disallowed_hosts:
            raise UriRefused(f"host {host!r} is disallowed")
        port = url.port or DEFAULT_PORTS[scheme]
        if self.allowed_ports and port not in self.allowed_ports:
            raise UriRefused(f"port {port} is not allowed; allowed ports are "
                             f"{', '.join(map(str, self.allowed_ports))}")
        return url

    async def address_for(self, url: httpx.URL, resolver: Resolver = resolve) -> str:
        """The address to connect to for ``url``, once every address of its host passed.

        Raises ``UriRefused`` for a host with a non-global address (unless allowed), and
        ``SourceUnavailable`` when the host does not resolve.
        """
        host = url.host
        port = url.port or DEFAULT_PORTS[url.scheme]
        try:
            addresses = await resolver(host, port)
        except OSError as exc:
            raise SourceUnavailable(f"host {host!r} does not resolve: {exc}") from exc
        if not addresses:
            raise SourceUnavailable(f"host {host!r} does not resolve")
        if "*" not in self.private_hosts and host not in self.private_hosts:
            for address in addresses:
                kind = non_global_kind(address)
                if kind is not None:
                    shown = host if host == address else f"{host!r} ({address})"
                    raise UriRefused(f"host {shown} is a {kind} address; web-download "
                                     "fetches only from public addresses")
        return addresses[0]


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
    timeout = httpx.Timeout(read_timeout, connect=CONNECT_TIMEOUT)
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False,
                                 trust_env=False) as client:
        for hop in range(max_redirects + 1):
            address = await uri_filter.address_for(url, resolver)
            request = client.build_request(
                "GET",
                url.copy_with(host=address),
                headers={"Host": url.netloc.decode("ascii"), "Accept-Encoding": "identity",
                         "User-Agent": USER_AGENT},
                extensions={"sni_hostname": url.host} if url.scheme == "https" else {},
            )
            try:
                response = await client.send(request, stream=True)
            except httpx.HTTPError as exc:
                raise SourceUnavailable(f"could not fetch {url}: "
                                        f"{exc or type(exc).__name__}") from exc
            try:
                location = response.headers.get("location")
                if response.is_redirect and location:
                    if hop == max_redirects:
                        raise UriRefused(f"{uri} redirects more than {max_redirects} times")
                    url = uri_filter.check(str(url.join(location)))
                    continue
                if response.status_code != 200:
                    raise SourceUnavailable(f"{url} answered {response.status_code} "
                                            f"{response.reason_phrase}")
                yield WebSource(response, url)
                return
            finally:
                await response.aclose()
    raise AssertionError("unreachable")  # pragma: no cover

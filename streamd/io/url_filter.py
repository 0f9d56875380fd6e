"""SSRF filters for URLs that users hand the server: checked before every connection.

A URL a user gives (web-download's ``uri``, an HTTP store's location) makes the server
open a connection, so every hop is checked before it is connected to (``UrlFilter``):

- Glance's filters (``[import_filtering_opts]``): allowed schemes, allowed or disallowed
  hosts, allowed ports; an empty allow-list allows any;
- beyond Glance: the host is resolved, and if *any* of its addresses is loopback, private,
  link-local or otherwise not global (``ipaddress``'s ``is_global``; an IPv4-mapped IPv6
  address counts as its IPv4 address) it is refused, unless the host is listed in
  ``private_hosts`` (``*``: any). The connection then goes to the address that was checked
  (the URL's host is replaced by it, with ``Host`` and TLS SNI/verification still using the
  name), so the name cannot resolve elsewhere between check and connect (DNS rebinding);
- redirects are followed by hand (``send_filtered``), each hop checked the same way.

The client must not take a proxy from the environment (``trust_env=False``): a proxy
would connect on our behalf, unchecked.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from streamd.errors import BadRequest, ServiceUnavailable

if TYPE_CHECKING:
    import httpx

DEFAULT_PORTS = {"http": 80, "https": 443}

Resolver = Callable[[str, int], Awaitable[list[str]]]


class UriRefused(BadRequest):
    """The URI, or a hop it redirects to, is not allowed by the URL filters.
    Retrying will not help; use another URI (or ask an operator to allow it)."""


class TooManyRedirects(UriRefused):
    """The URI redirects more than the allowed number of times."""


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
class UrlFilter:
    """Which URLs the server may fetch (see the module docstring).

    ``purpose`` names who fetches, in the refusals ("web-download fetches only from public
    addresses").
    """

    allowed_schemes: Sequence[str] = ("http", "https")
    allowed_hosts: Sequence[str] = ()
    disallowed_hosts: Sequence[str] = ()
    allowed_ports: Sequence[int] = (80, 443)
    private_hosts: Sequence[str] = ()
    purpose: str = "streamd"

    def check(self, uri: object) -> httpx.URL:
        """The URI parsed, if its scheme, host and port pass; else ``UriRefused``."""
        if not isinstance(uri, str) or not uri:
            raise UriRefused(f"{self.purpose} needs a URL, e.g. https://…/image.qcow2")
        import httpx  # here, not at the top: a server that never calls out does not load it
        try:
            url = httpx.URL(uri)
        except (httpx.InvalidURL, ValueError):
            raise UriRefused(f"{uri!r} is not a URL") from None
        scheme, host = url.scheme, url.host
        if scheme not in DEFAULT_PORTS or (self.allowed_schemes
                                           and scheme not in self.allowed_schemes):
            allowed = [s for s in self.allowed_schemes if s in DEFAULT_PORTS]
            raise UriRefused(f"scheme {scheme or '(none)'!r} is not allowed; use "
                             f"{' or '.join(allowed) or f'nothing: {self.purpose} is disabled'}")
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
                    raise UriRefused(f"host {shown} is a {kind} address; {self.purpose} "
                                     "fetches only from public addresses")
        return addresses[0]


async def send_filtered(
    client: httpx.AsyncClient,
    method: str,
    url: httpx.URL,
    url_filter: UrlFilter,
    *,
    headers: Mapping[str, str],
    max_redirects: int,
    resolver: Resolver = resolve,
) -> tuple[httpx.Response, httpx.URL]:
    """Send ``method`` to ``url`` (already ``check``-ed), following redirects by hand.

    Each hop is checked, then connected to at the address that was checked. Returns the
    first response that is not a redirect, streamed (the caller closes it), and its URL.
    ``client`` must not follow redirects nor trust the environment's proxies. Raises
    ``UriRefused`` (a hop fails the filters; ``TooManyRedirects``) and ``SourceUnavailable``
    (unresolvable or unreachable host, with the ``httpx`` error as ``__cause__``).
    """
    first = url
    for hop in range(max_redirects + 1):
        address = await url_filter.address_for(url, resolver)
        request = client.build_request(
            method,
            url.copy_with(host=address),
            headers={"Host": url.netloc.decode("ascii"), **headers},
            extensions={"sni_hostname": url.host} if url.scheme == "https" else {},
        )
        import httpx  # here, not at the top: a server that never calls out does not load it
        try:
            response = await client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise SourceUnavailable(f"could not fetch {url}: "
                                    f"{exc or type(exc).__name__}") from exc
        location = response.headers.get("location")
        if not (response.is_redirect and location):
            return response, url
        await response.aclose()
        if hop == max_redirects:
            raise TooManyRedirects(f"{first} redirects more than {max_redirects} times")
        url = url_filter.check(str(url.join(location)))
    raise AssertionError("unreachable")  # pragma: no cover

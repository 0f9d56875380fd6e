"""web-download's URI filters: Glance's scheme/host/port lists, and every resolved address
of every hop must be global unless its host is trusted (a resolver is injected)."""

from __future__ import annotations

import pytest

from streamd.io.web_download import SourceUnavailable, UriFilter, UriRefused


def resolver(table: dict[str, list[str]]):  # noqa: ANN201
    async def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError(-2, "Name or service not known")
        return table[host]

    return resolve


@pytest.mark.parametrize(("uri", "why"), [
    ("ftp://example.com/x", "scheme 'ftp'"),
    ("file:///etc/passwd", "scheme 'file'"),
    ("http://example.com:8080/x", "port 8080"),
    ("https://example.com:22/x", "port 22"),
    ("http:///x", "no host"),
    (None, "needs a 'uri'"),
])
def test_glance_filters(uri: object, why: str) -> None:
    with pytest.raises(UriRefused, match=why):
        UriFilter().check(uri)


def test_host_lists() -> None:
    assert UriFilter(allowed_hosts=("a.test",)).check("http://a.test/x").host == "a.test"
    with pytest.raises(UriRefused, match="not one of the allowed hosts"):
        UriFilter(allowed_hosts=("a.test",)).check("http://b.test/x")
    with pytest.raises(UriRefused, match="disallowed"):
        UriFilter(disallowed_hosts=("b.test",)).check("http://b.test/x")
    assert UriFilter(allowed_ports=()).check("http://b.test:8080/x").port == 8080


@pytest.mark.parametrize(("addresses", "kind"), [
    (["127.0.0.1"], "loopback"),
    (["93.184.216.34", "10.0.0.7"], "private"),  # one bad address among good ones is enough
    (["169.254.169.254"], "link-local"),
    (["::ffff:127.0.0.1"], "loopback"),
    (["fd00::1"], "private"),
    (["100.64.1.1"], "non-global"),
])
async def test_every_resolved_address_must_be_global(addresses: list[str], kind: str) -> None:
    url = UriFilter().check("http://mirror.test/image.raw")
    with pytest.raises(UriRefused, match=kind):
        await UriFilter().address_for(url, resolver({"mirror.test": addresses}))


async def test_trusted_hosts_may_be_private() -> None:
    url = UriFilter().check("http://mirror.test/image.raw")
    table = resolver({"mirror.test": ["10.0.0.7"]})
    assert await UriFilter(private_hosts=("mirror.test",)).address_for(url, table) == "10.0.0.7"
    assert await UriFilter(private_hosts=("*",)).address_for(url, table) == "10.0.0.7"
    public = resolver({"mirror.test": ["93.184.216.34"]})
    assert await UriFilter().address_for(url, public) == "93.184.216.34"


async def test_a_host_that_does_not_resolve() -> None:
    url = UriFilter().check("http://nowhere.test/x")
    with pytest.raises(SourceUnavailable, match="does not resolve"):
        await UriFilter().address_for(url, resolver({}))

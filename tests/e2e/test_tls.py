"""Native TLS (``tls_certfile``/``tls_keyfile``, ``tls_ca_certs`` for client certificates)
with certificates from a trustme CA: glanceclient, openstacksdk, httpx and curl verify the
server; HTTP/1.1 is what ALPN offers; downloads stream (``os.sendfile`` would put plaintext
on a TLS socket), byte for byte and for ranges; a client without a certificate is refused
when one is required; half a TLS configuration is refused at start with a clear message.
"""

from __future__ import annotations

import hashlib
import io
import random
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import glanceclient
import httpx
import openstack
import pytest
import trustme

from tests.data_client import MEMBER, OCTET
from tests.servers import ServerProcess

DATA = random.Random("tls").randbytes(3 * 1024 * 1024 + 17)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def pki(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The CA bundle, the server's chain and key, and a client's certificate (one PEM)."""
    d = tmp_path_factory.mktemp("pki")
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("client@example.com")
    paths = {"ca": d / "ca.pem", "chain": d / "server.pem", "key": d / "server.key",
             "client": d / "client.pem"}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    server.private_key_pem.write_to_path(str(paths["key"]))
    for i, blob in enumerate(server.cert_chain_pems):
        blob.write_to_path(str(paths["chain"]), append=i > 0)
    client.private_key_and_cert_chain_pem.write_to_path(str(paths["client"]))
    return paths


@pytest.fixture(scope="module")
def tls_server(pki: dict[str, Path],
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"STREAMD_TLS_CERTFILE": str(pki["chain"]), "STREAMD_TLS_KEYFILE": str(pki["key"])}
    with ServerProcess(data_dir=tmp_path_factory.mktemp("tls") / "data", env=env,
                       verify=ssl.create_default_context(cafile=str(pki["ca"]))) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _no_ca_bundle_override(monkeypatch: pytest.MonkeyPatch) -> None:
    """requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE (set on some machines, this one
    included) override a session's ``verify``, i.e. glanceclient's ``cacert``: a user who
    has them set must point them at the CA too. Here the clients' own setting is tested."""
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


def _client(srv: ServerProcess) -> httpx.Client:
    return httpx.Client(base_url=srv.url, verify=srv.verify, headers=MEMBER, timeout=30)


def test_glanceclient_over_tls_verifies_and_moves_bytes(tls_server: ServerProcess,
                                                        pki: dict[str, Path]) -> None:
    glance = glanceclient.Client(endpoint=tls_server.url + "/v2", token="x",
                                 cacert=str(pki["ca"]))
    glance.http_client.session.headers.update(MEMBER)
    image = glance.images.create(name="over-tls", disk_format="raw", container_format="bare")
    glance.images.upload(image.id, io.BytesIO(DATA))
    assert glance.images.get(image.id).status == "active"
    assert b"".join(glance.images.data(image.id)) == DATA
    glance.images.delete(image.id)
    # the same client without the CA refuses the server: the check is real
    unverified = glanceclient.Client(endpoint=tls_server.url + "/v2", token="x")
    with pytest.raises(Exception, match="(?i)certificate|ssl"):
        list(unverified.images.list())


def test_openstacksdk_over_tls(tls_server: ServerProcess, pki: dict[str, Path]) -> None:
    conn = openstack.connect(auth_type="admin_token",
                             auth={"endpoint": tls_server.url + "/v2", "token": "x"},
                             cacert=str(pki["ca"]), load_yaml_config=False,
                             load_envvars=False)
    try:
        image = conn.image.create_image(name="sdk-tls", disk_format="raw",
                                        container_format="bare", data=DATA,
                                        allow_duplicates=True, validate_checksum=False)
        got = conn.image.download_image(image)
        assert got.content == DATA
        conn.image.delete_image(image)
    finally:
        conn.close()


def test_download_streams_over_tls_byte_for_byte(tls_server: ServerProcess) -> None:
    with _client(tls_server) as client:
        image_id = client.post("/v2/images", json={"disk_format": "raw",
                                                   "container_format": "bare"}).json()["id"]
        r = client.put(f"/v2/images/{image_id}/file", content=DATA, headers=OCTET)
        assert r.status_code == 204, r.text
        r = client.get(f"/v2/images/{image_id}/file")
        assert r.content == DATA
        assert r.headers["content-md5"] == hashlib.md5(DATA).hexdigest()
        assert r.http_version == "HTTP/1.1"
        for header, (start, end) in [("bytes=0-0", (0, 1)), ("bytes=1000-", (1000, len(DATA))),
                                     ("bytes=-4096", (len(DATA) - 4096, len(DATA)))]:
            r = client.get(f"/v2/images/{image_id}/file", headers={"Range": header})
            assert (r.status_code, r.content) == (206, DATA[start:end]), header
    deadline = time.monotonic() + 10
    while len(re.findall(rf"DOWNLOAD image={image_id} ", tls_server.log())) < 4:
        assert time.monotonic() < deadline, tls_server.log()[-2000:]
        time.sleep(0.05)
    assert set(re.findall(rf"DOWNLOAD image={image_id} .* via=(\w+)", tls_server.log())) == {
        "stream"}


def test_alpn_offers_http11_only(tls_server: ServerProcess, pki: dict[str, Path]) -> None:
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    context.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", tls_server.port)) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        assert tls.selected_alpn_protocol() == "http/1.1"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_verifies_the_server(tls_server: ServerProcess, pki: dict[str, Path]) -> None:
    ok = subprocess.run(["curl", "-sS", "--cacert", str(pki["ca"]),
                         f"{tls_server.url}/versions"], capture_output=True, text=True)
    assert ok.returncode == 0 and '"versions"' in ok.stdout, ok.stderr
    refused = subprocess.run(["curl", "-sS", f"{tls_server.url}/versions"],
                             capture_output=True, text=True)
    assert refused.returncode == 60, refused.stderr  # peer certificate cannot be authenticated


def test_client_certificates_when_tls_ca_certs(pki: dict[str, Path], make_server: Any) -> None:
    srv = make_server(env={"STREAMD_TLS_CERTFILE": str(pki["chain"]),
                           "STREAMD_TLS_KEYFILE": str(pki["key"]),
                           "STREAMD_TLS_CA_CERTS": str(pki["ca"])},
                      verify=_with_client_cert(pki))
    with httpx.Client(verify=_with_client_cert(pki)) as client:
        assert client.get(srv.url + "/versions").status_code == 200
    without = ssl.create_default_context(cafile=str(pki["ca"]))
    with httpx.Client(verify=without) as client, pytest.raises(httpx.TransportError):
        client.get(srv.url + "/versions")  # no client certificate: the handshake fails


def _with_client_cert(pki: dict[str, Path]) -> Any:
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    context.load_cert_chain(str(pki["client"]))
    return context


@pytest.mark.parametrize(("env", "message"), [
    ({"STREAMD_TLS_CERTFILE": "{chain}"}, "TLS needs both tls_certfile and tls_keyfile"),
    ({"STREAMD_TLS_CERTFILE": "{chain}", "STREAMD_TLS_KEYFILE": "{dir}/nope.key"},
     "'{dir}/nope.key' is not a readable file"),
    ({"STREAMD_TLS_CA_CERTS": "{ca}"}, "client certificates need TLS"),
])
def test_half_a_tls_configuration_is_refused(pki: dict[str, Path], tmp_path: Path,
                                              env: dict[str, str], message: str) -> None:
    values = {"chain": pki["chain"], "ca": pki["ca"], "dir": tmp_path}
    env = {k: v.format(**values) for k, v in env.items()}
    r = subprocess.run([sys.executable, "-m", "streamd", "serve", "--data-dir",
                        str(tmp_path / "data"), "--bind", "127.0.0.1:0"],
                       env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode != 0
    assert message.format(**values) in r.stderr + r.stdout

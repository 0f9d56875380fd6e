"""The server starts on a real socket, answers version discovery, and stops on SIGTERM."""

from __future__ import annotations

import httpx

from tests.errors import error_of
from tests.servers import ServerProcess


def test_versions(server: ServerProcess) -> None:
    root = httpx.get(server.url + "/")
    assert root.status_code == 300
    versions = httpx.get(server.url + "/versions")
    assert versions.status_code == 200
    ids = [v["id"] for v in versions.json()["versions"]]
    assert "v2.0" in ids
    current = [v for v in versions.json()["versions"] if v["status"] == "CURRENT"]
    assert current and current[0]["links"][0]["href"] == server.url + "/v2/"


def test_unknown_path_is_json_404(server: ServerProcess) -> None:
    r = httpx.get(server.url + "/nope")
    assert r.status_code == 404
    assert error_of(r)["title"] == "Not Found"


def test_keep_alive_reuses_one_connection(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url) as client:
        for _ in range(5):
            assert client.get("/versions").status_code == 200
        pool = client._transport._pool  # type: ignore[attr-defined]
        assert len(pool.connections) == 1


def test_sigterm_stops_cleanly(make_server) -> None:  # noqa: ANN001
    srv = make_server()
    assert srv.stop() == 0

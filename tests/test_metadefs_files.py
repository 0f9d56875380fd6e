"""``streamd metadefs load|export|unload``, run as an operator runs them, on every database;
and a server then serves what was loaded (prefixes, objects, tags, private namespaces)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.registry.conftest import BACKENDS, fresh_database
from tests.servers import ADMIN_HEADERS, ServerProcess

DEFINITIONS = Path(__file__).parent / "data" / "metadefs"


def streamd(*args: str, database: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streamd", *args, "--database-url", database],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_database(request.param, tmp_path) as url:
        if request.param != "sqlite":  # an external database is migrated by the operator
            migrated = subprocess.run([sys.executable, "-m", "streamd", "db", "upgrade",
                                       "--database-url", url], capture_output=True, text=True)
            assert migrated.returncode == 0, migrated.stderr
        yield url


def documents(directory: Path) -> dict[str, dict[str, object]]:
    return {(doc := json.loads(p.read_text()))["namespace"]: doc
            for p in directory.glob("*.json")}


def test_load_then_export_round_trips(database: str, tmp_path: Path) -> None:
    loaded = streamd("metadefs", "load", str(DEFINITIONS), database=database)
    assert loaded.returncode == 0, loaded.stderr
    assert sorted(loaded.stdout.split("\n")[:-1]) == [
        "loaded StreamdTest::Compute::Pinning", "loaded StreamdTest::Private::Billing",
        "loaded StreamdTest::Storage::QoS"]
    exported = streamd("metadefs", "export", str(tmp_path / "out"), database=database)
    assert exported.returncode == 0, exported.stderr
    assert documents(tmp_path / "out") == documents(DEFINITIONS)
    # a second load skips what exists; --replace loads it anew
    again = streamd("metadefs", "load", str(DEFINITIONS), database=database)
    assert again.returncode == 0 and again.stdout.count("skipped") == 3
    replaced = streamd("metadefs", "load", str(DEFINITIONS), "--replace", database=database)
    assert replaced.returncode == 0 and replaced.stdout.count("loaded") == 3
    one = streamd("metadefs", "export", str(tmp_path / "one"), "--namespace",
                  "StreamdTest::Storage::QoS", database=database)
    assert [p.name for p in (tmp_path / "one").iterdir()] == ["StreamdTest-Storage-QoS.json"]
    assert one.returncode == 0
    unloaded = streamd("metadefs", "unload", database=database)
    assert unloaded.returncode == 0 and unloaded.stdout.count("unloaded") == 3
    empty = streamd("metadefs", "export", str(tmp_path / "empty"), database=database)
    assert empty.returncode == 0 and list((tmp_path / "empty").iterdir()) == []


def test_a_bad_file_is_named_and_nothing_is_loaded(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'r.sqlite'}"
    for path in DEFINITIONS.glob("*.json"):
        (tmp_path / path.name).write_text(path.read_text())
    (tmp_path / "zz-broken.json").write_text(json.dumps({
        "namespace": "StreamdTest::Broken",
        "properties": {"p": {"title": "P", "type": "blob"}}}))
    (tmp_path / "zz-unknown.json").write_text("{")
    failed = streamd("metadefs", "load", str(tmp_path), database=database)
    assert failed.returncode == 2
    assert "zz-broken.json" in failed.stderr and "'blob' is not one of" in failed.stderr
    (tmp_path / "zz-broken.json").unlink()
    failed = streamd("metadefs", "load", str(tmp_path), database=database)
    assert failed.returncode == 2 and "zz-unknown.json: not a readable JSON file" in failed.stderr
    out = streamd("metadefs", "export", str(tmp_path / "out"), database=database)
    assert out.returncode == 0 and list((tmp_path / "out").iterdir()) == []
    missing = streamd("metadefs", "load", str(tmp_path / "nowhere"), database=database)
    assert missing.returncode == 2 and "no such directory" in missing.stderr


def test_a_server_serves_what_was_loaded(tmp_path: Path) -> None:
    data = tmp_path / "data"
    loaded = subprocess.run([sys.executable, "-m", "streamd", "metadefs", "load",
                             str(DEFINITIONS), "--data-dir", str(data)],
                            capture_output=True, text=True)
    assert loaded.returncode == 0, loaded.stderr
    with ServerProcess(data_dir=data) as srv, httpx.Client(base_url=srv.url) as client:
        ns = "/v2/metadefs/namespaces/StreamdTest::Compute::Pinning"
        flavor = client.get(f"{ns}?resource_type=StreamdTest::Flavor",
                            headers=ADMIN_HEADERS).json()
        assert sorted(flavor["properties"]) == ["hw:cpu_count", "hw:cpu_model", "hw:cpu_policy"]
        [threads] = flavor["objects"]
        assert threads["required"] == ["hw:thread_policy"]
        assert sorted(threads["properties"]) == ["hw:siblings", "hw:thread_policy"]
        assert flavor["properties"]["hw:cpu_policy"]["default"] == "shared"
        assert [t["name"] for t in client.get(f"{ns}/tags", headers=ADMIN_HEADERS).json()[
            "tags"]] == ["numa", "dedicated"]
        prop = client.get(f"{ns}/properties/hw_cpu_count?resource_type=StreamdTest::Image",
                          headers=ADMIN_HEADERS).json()
        assert prop == {"title": "CPUs", "type": "integer", "minimum": 1, "maximum": 128,
                        "name": "cpu_count"}
        listing = client.get("/v2/metadefs/namespaces?resource_types=StreamdTest::Flavor"
                             "&sort_key=namespace&sort_dir=asc",
                             headers={"X-Project-Id": "someone", "X-Roles": "member"}).json()
        assert [n["namespace"] for n in listing["namespaces"]] == [
            "StreamdTest::Compute::Pinning", "StreamdTest::Storage::QoS"]
        billing = "/v2/metadefs/namespaces/StreamdTest::Private::Billing"
        assert client.get(billing, headers={"X-Project-Id": "someone",
                                            "X-Roles": "member"}).status_code == 404
        assert client.get(billing, headers={"X-Project-Id": "billing-project",
                                            "X-Roles": "member"}).status_code == 200
        types = client.get("/v2/metadefs/resource_types", headers=ADMIN_HEADERS).json()
        assert sorted(t["name"] for t in types["resource_types"]) == [
            "StreamdTest::Flavor", "StreamdTest::Image", "StreamdTest::Volume"]

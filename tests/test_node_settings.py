"""The settings of a node among several: node_id, lease_ttl, worker_self_reference_url,
repair_interval; their defaults and the values start-up refuses."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from streamd.config import ConfigError, Settings, load_settings


def test_the_default_node_id_is_stable_and_differs_by_data_dir(tmp_path: Path) -> None:
    a = Settings(data_dir=tmp_path / "a")
    assert a.node == Settings(data_dir=tmp_path / "a").node  # the same after a restart
    assert a.node != Settings(data_dir=tmp_path / "b").node
    assert a.node.startswith(socket.gethostname() + "-")
    assert Settings(node_id="node-7").node == "node-7"


def test_self_url_defaults_to_the_bind_address() -> None:
    assert Settings(bind="127.0.0.1:9393").self_url == "http://127.0.0.1:9393"
    assert Settings(bind="[::1]:9292").self_url == "http://[::1]:9292"
    wildcard = Settings(bind="0.0.0.0:9292", noauth_allow_remote=True).self_url
    assert wildcard == f"http://{socket.getfqdn()}:9292"
    set_url = Settings(worker_self_reference_url="https://node-a.example:9292/")
    assert set_url.self_url == "https://node-a.example:9292"


def test_from_the_environment(tmp_path: Path) -> None:
    s = load_settings(env={"STREAMD_NODE_ID": "a", "STREAMD_LEASE_TTL": "2",
                           "STREAMD_REPAIR_INTERVAL": "0.5",
                           "STREAMD_WORKER_SELF_REFERENCE_URL": "http://10.0.0.5:9292"})
    assert (s.node, s.lease_ttl, s.repair_interval, s.self_url) == (
        "a", 2.0, 0.5, "http://10.0.0.5:9292")


@pytest.mark.parametrize(("env", "name"), [
    ({"STREAMD_LEASE_TTL": "0.5"}, "lease_ttl"),
    ({"STREAMD_REPAIR_INTERVAL": "0"}, "repair_interval"),
    ({"STREAMD_NODE_ID": "a\tb"}, "node_id"),
    ({"STREAMD_WORKER_SELF_REFERENCE_URL": "node-a:9292"}, "worker_self_reference_url"),
    ({"STREAMD_WORKER_SELF_REFERENCE_URL": "ftp://node-a"}, "worker_self_reference_url"),
])
def test_bad_values_are_refused_by_name(env: dict[str, str], name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings(env=env)

"""``[stores.<id>]`` tables: parsed, checked by type, secrets from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamd.config import ConfigError, load_settings

SWIFT = """
[stores.swift1]
type = "swift"
description = "Swift in region one"
auth_url = "http://127.0.0.1:8080/auth/v1.0"
user = "test:tester"
segment_size = 1048576
"""


def settings_from(tmp_path: Path, text: str, env: dict[str, str] | None = None):
    path = tmp_path / "streamd.toml"
    path.write_text(text)
    return load_settings(path, env=env or {})


def test_no_tables_means_one_file_store() -> None:
    settings = load_settings(env={})
    assert [(s.id, s.type) for s in settings.stores] == [("file", "file")]
    assert settings.default_store_id == "file"


def test_a_swift_store_with_its_key_from_the_environment(tmp_path: Path) -> None:
    settings = settings_from(tmp_path, SWIFT, {"STREAMD_STORES__SWIFT1__KEY": "testing"})
    (spec,) = settings.stores
    assert (spec.id, spec.type, spec.description) == ("swift1", "swift", "Swift in region one")
    assert spec.option("key") == "testing" and spec.option("segment_size") == 1048576
    assert spec.option("container") == "streamd"  # the default
    assert "key" not in spec.public_options() and spec.public_options()["user"] == "test:tester"
    assert settings.default_store_id == "swift1"


def test_several_stores_need_a_default(tmp_path: Path) -> None:
    text = SWIFT + 'key = "k"\n[stores.local]\ntype = "file"\n'
    with pytest.raises(ConfigError, match="default_store"):
        settings_from(tmp_path, text)
    assert settings_from(tmp_path, 'default_store = "local"\n' + text).default_store_id == "local"
    with pytest.raises(ConfigError, match="'nowhere' is not a configured store"):
        settings_from(tmp_path, 'default_store = "nowhere"\n' + text)


@pytest.mark.parametrize(("table", "message"), [
    ('type = "ftp"', "type must be one of file, swift, s3"),
    ('type = "s3"', "option 'bucket' is required"),
    ('type = "s3"\nbucket = "b"\npart_size = 1024', "part_size must be at least 5 MiB"),
    ('type = "s3"\nbucket = "b"\nbukket = "c"', r"unknown option\(s\) bukket"),
    ('type = "s3"\nbucket = "b"\naccess_key = "a"', "both access_key and secret_key"),
    ('type = "s3"\nbucket = "b"\naddressing_style = "dns"', "path or virtual"),
    ('type = "swift"\nuser = "u"', "needs auth_url, user and key"),
    ('type = "swift"\nstorage_url = "http://x"\ntoken = "t"\nsegment_size = "big"',
     "'big' is not a valid int"),
    ('type = "file"\ncreate_container = true', r"unknown option\(s\) create_container"),
])
def test_bad_tables_name_the_store_and_the_option(
    tmp_path: Path, table: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        settings_from(tmp_path, f"[stores.mine]\n{table}\n")
    assert "store 'mine'" in str(caught.value)


def test_an_http_store_takes_no_options(tmp_path: Path) -> None:
    text = 'default_store = "local"\n[stores.local]\ntype = "file"\n[stores.web]\ntype = "http"\n'
    local, web = settings_from(tmp_path, text).stores
    # but whether the read-through cache is in front of it, as every store (default: not
    # for a file store, for the others)
    assert (web.id, web.type, dict(web.options), web.public_options()) == (
        "web", "http", {"cached": True}, {})
    assert local.options["cached"] is False
    with pytest.raises(ConfigError, match=r"unknown option\(s\) path for a http store"):
        settings_from(tmp_path, text + 'path = "/srv"\n')


def test_only_one_file_store_may_leave_out_its_path(tmp_path: Path) -> None:
    text = 'default_store = "a"\n[stores.a]\ntype = "file"\n[stores.b]\ntype = "file"\n'
    with pytest.raises(ConfigError, match="only one file store may leave out path"):
        settings_from(tmp_path, text)


def test_a_badly_named_store_variable_is_refused() -> None:
    with pytest.raises(ConfigError, match="STREAMD_STORES__<ID>__<OPTION>"):
        load_settings(env={"STREAMD_STORES__KEY": "x"})

"""``open_stores``: an http store is built with web-download's URL filters, and may not be
the store uploads go to."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from streamd.config import ConfigError, Settings, load_settings
from streamd.io.stores.http import HttpStore
from streamd.service.stores import open_stores

WEB = '[stores.web]\ntype = "http"\n'
LOCAL = '[stores.local]\ntype = "file"\n'


def settings_from(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "streamd.toml"
    path.write_text(f'data_dir = "{tmp_path / "data"}"\n' + text)
    return load_settings(path, env={})


async def test_the_http_store_fetches_what_web_download_may(tmp_path: Path) -> None:
    settings = settings_from(tmp_path, 'default_store = "local"\n'
                             'web_download_private_hosts = ["127.0.0.1"]\n'
                             'web_download_allowed_ports = [8080]\n' + LOCAL + WEB)
    stores = await open_stores(settings, trio.CapacityLimiter(2))
    try:
        web = stores.get("web")
        assert isinstance(web, HttpStore) and web.capabilities.read_only
        assert web.url_filter.private_hosts == ("127.0.0.1",)
        assert web.url_filter.allowed_ports == (8080,)
        assert stores.ids_of_type("http") == ["web"]
        assert stores.ids_of_type("file") == ["local"]
    finally:
        await stores.aclose()


@pytest.mark.parametrize("text", [WEB, 'default_store = "web"\n' + LOCAL + WEB])
async def test_a_read_only_default_store_stops_start_up(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match="'web' is read-only"):
        await open_stores(settings_from(tmp_path, text), trio.CapacityLimiter(2))

"""``streamd --version``, the help of every command and option, and ``streamd config show``
(run as the ``streamd`` command a user types)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from streamd.cli import build_parser


def streamd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STREAMD_")}
    return subprocess.run([sys.executable, "-m", "streamd", *args], env={**clean, **(env or {})},
                          capture_output=True, text=True, timeout=60)


def _parsers(parser: argparse.ArgumentParser, path: str = "streamd"
             ) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _parsers(sub, f"{path} {name}")
    return found


def test_version() -> None:
    done = streamd("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"streamd {version('streamd')}"


def test_every_command_and_option_has_a_help_line() -> None:
    missing = []
    for path, parser in _parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                missing += [f"{path} {c.dest}" for c in action._choices_actions if not c.help]
            elif action.help is None:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    assert missing == []


def test_serve_help_points_to_the_settings() -> None:
    done = streamd("serve", "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    for words in ("--config", "STREAMD_CONFIG", "STREAMD_<NAME>", "STREAMD_STORES__",
                  "streamd config show"):
        assert words in text
    assert "wiring only" not in streamd("--help").stdout


def test_config_show_values_sources_and_masked_secrets(tmp_path: Path) -> None:
    config = tmp_path / "streamd.toml"
    config.write_text('workers = 3\nkeystone_service_password = "hunter2-secret"\n'
                      '[stores.s3]\ntype = "s3"\nbucket = "b"\naccess_key = "ak"\n'
                      'secret_key = "sk-secret"\n')
    done = streamd("config", "show", "--config", str(config), "--bind", "127.0.0.1:9999",
                   "--database-url", "postgresql+psycopg://streamd:pw-secret@db/streamd",
                   env={"STREAMD_MAX_TRANSFERS": "7"})
    assert done.returncode == 0, done.stderr
    lines = set(done.stdout.splitlines())
    assert 'bind = "127.0.0.1:9999"  # flag --bind' in lines
    assert f"workers = 3  # file {config}" in lines
    assert "max_transfers = 7  # env STREAMD_MAX_TRANSFERS" in lines
    assert "queue_depth = 4  # default" in lines
    assert f'keystone_service_password = "***"  # file {config}' in lines
    assert ('database_url = "postgresql+psycopg://streamd:***@db/streamd"  # flag '
            '--database-url') in lines
    assert f'stores.s3.secret_key = "***"  # file {config}' in lines
    assert f'stores.s3.bucket = "b"  # file {config}' in lines
    assert "secret" not in done.stdout.replace("secret_key", "")

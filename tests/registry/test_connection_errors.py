"""A registry that cannot be reached is a retryable 503 whose log line says so in words."""

from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa

from streamd.errors import ServiceUnavailable
from streamd.registry.connection import connect
from tests.servers import free_port


def test_an_unreachable_registry_is_503_and_logged_in_words(
        caplog: pytest.LogCaptureFixture) -> None:
    engine = sa.create_engine(f"postgresql+psycopg://streamd@127.0.0.1:{free_port()}/none",
                              connect_args={"connect_timeout": 2})
    with caplog.at_level(logging.WARNING, "streamd.registry"), \
            pytest.raises(ServiceUnavailable) as raised, connect(engine) as conn:
        conn.execute(sa.text("SELECT 1"))
    assert raised.value.headers == {"Retry-After": "1"}
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("registry busy or unreachable, the request gets 503 (OperationalError")
    assert "refused" in line.lower()
    engine.dispose()

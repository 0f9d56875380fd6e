"""``streamd serve``: hypercorn's trio worker and the runtime in one nursery.

The nursery owns the registry's thread limiter, the HTTP server and (later) the periodic
jobs; SIGINT/SIGTERM trigger hypercorn's graceful shutdown, after which the whole nursery
is cancelled and every resource released.
"""

from __future__ import annotations

import logging
import signal

import hypercorn.trio.tcp_server
import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve

from streamd.config import Settings
from streamd.http.app import create_app
from streamd.service.runtime import open_runtime
from streamd.units import MiB

log = logging.getLogger("streamd")

# hypercorn reads the socket 64 KiB at a time; 1 MiB reads cut the per-read overhead of a
# multi-GB upload (469 -> 642 MiB/s raw-ASGI PUT measured on this machine, see issue 3)
SOCKET_READ = 1 * MiB


def hypercorn_config(settings: Settings) -> Config:
    config = Config()
    config.bind = [settings.bind]
    config.keep_alive_timeout = settings.keep_alive_timeout
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    # data routes stream themselves; these only bound the metadata routes
    config.h11_max_incomplete_size = 64 * 1024
    config.max_app_queue_size = 16
    config.graceful_timeout = 10.0
    return config


async def serve(
    settings: Settings,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
    shutdown: trio.Event | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM (or ``shutdown`` is set); ``task_status`` gets the bound URLs."""
    hypercorn.trio.tcp_server.MAX_RECV = SOCKET_READ
    shutdown = shutdown or trio.Event()
    async with trio.open_nursery() as nursery:
        async with open_runtime(settings, nursery) as rt:
            nursery.start_soon(_wait_for_signals, shutdown)
            app = create_app(rt)
            await hypercorn_serve(
                app,  # type: ignore[arg-type]
                hypercorn_config(settings),
                shutdown_trigger=shutdown.wait,
                task_status=task_status,
                mode="asgi",
            )
            nursery.cancel_scope.cancel()


async def _wait_for_signals(shutdown: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("received %s: shutting down", signal.Signals(signum).name)
            shutdown.set()
            return

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

from streamd.auth import open_authenticator
from streamd.config import Settings
from streamd.http.app import create_app
from streamd.service.runtime import open_runtime
from streamd.units import KiB

log = logging.getLogger("streamd")

# hypercorn reads the socket 64 KiB at a time. Each read is copied ~4 times on its way to
# the app (see streamd.http.data) and a connection holds several reads at once (its h11
# buffer, the queued messages, the one being copied), so the read size is most of a
# connection's memory as well as its per-read overhead. Measured with O_DIRECT writes
# (1 GiB random from curl, 8 uploads at once; MiB/s, server CPU s/GiB, peak RSS MiB):
# 64 KiB 375, 3.9, 94; 128 KiB 455-470, 3.3, 101-112; 256 KiB 468, 3.3, 121;
# 512 KiB 489-498, 3.2, 136-137. One upload ran ~500 MiB/s at 128 KiB and 512 KiB alike.
SOCKET_READ = 128 * KiB


def hypercorn_config(settings: Settings) -> Config:
    config = Config()
    config.bind = [settings.bind]
    config.keep_alive_timeout = settings.keep_alive_timeout
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.h11_max_incomplete_size = 64 * KiB  # request line + headers
    # body messages (<= SOCKET_READ each) queued per request before hypercorn stops reading
    # the socket: this is the request's buffer in front of the data route's own. 16 was no
    # faster than 2 (measured with 512 KiB reads and a raw-ASGI PUT). Not less than 2: a
    # bodiless GET's one message and the disconnect queued when its response ends must fit
    # while the handler is still sending.
    config.max_app_queue_size = 2
    config.graceful_timeout = settings.graceful_timeout
    return config


async def serve(
    settings: Settings,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
    shutdown: trio.Event | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM (or ``shutdown`` is set); ``task_status`` gets the bound URLs."""
    hypercorn.trio.tcp_server.MAX_RECV = SOCKET_READ
    if shutdown is None:  # an Event has no truth value
        shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        async with open_runtime(settings, nursery) as rt, open_authenticator(settings) as auth:
            nursery.start_soon(_wait_for_signals, shutdown)
            app = create_app(rt, auth)
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

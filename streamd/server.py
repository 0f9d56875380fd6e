"""``streamd serve``: the ASGI server (hypercorn or anycorn) and the runtime in one nursery.

hypercorn is the default, taught the ``http.response.zerocopysend`` extension
(streamd/hypercorn_h11.py) so that a download of a local file goes out with
``os.sendfile`` instead of being copied through Python. anycorn, a fork of hypercorn on AnyIO
(run here on trio) that has the extension built in, is the other choice
(``http_server = "anycorn"``); it costs more CPU per request on everything else (metadata,
uploads). bench/results/README.md has the measurements behind the default.

The nursery holds the runtime (whose import jobs run in it), the HTTP server and the worker
processes; inside the runtime's block the primary process repairs what a crash left and
then runs the periodic jobs in their own nursery, which closes before the runtime does.
SIGINT/SIGTERM trigger hypercorn's graceful shutdown, after which the whole nursery is
cancelled and every resource released.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import signal
import ssl
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import trio

from streamd.auth import open_authenticator
from streamd.config import Settings
from streamd.http.app import create_app
from streamd.http.metrics import metrics_app
from streamd.service.periodic import periodic_jobs
from streamd.service.repair import repair
from streamd.service.runtime import Runtime, open_runtime
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


def server_config(settings: Settings, listen_fd: int | None = None) -> Any:
    """The ASGI server's ``Config`` (anycorn's is hypercorn's, forked: same fields);
    it serves on ``listen_fd`` (a bound socket, see ``streamd.startup``) when given."""
    config = importlib.import_module(f"{settings.http_server}.config").Config()
    # a copy of the descriptor: the server closes the one it is given
    config.bind = [settings.bind if listen_fd is None else f"fd://{os.dup(listen_fd)}"]
    config.keep_alive_timeout = settings.keep_alive_timeout
    config.accesslog = None
    config.errorlog = logging.getLogger(f"{settings.http_server}.error")
    config.h11_max_incomplete_size = 64 * KiB  # request line + headers
    # body messages (<= SOCKET_READ each) queued per request before hypercorn stops reading
    # the socket: this is the request's buffer in front of the data route's own. 16 was no
    # faster than 2 (measured with 512 KiB reads and a raw-ASGI PUT). Not less than 2: a
    # bodiless GET's one message and the disconnect queued when its response ends must fit
    # while the handler is still sending.
    config.max_app_queue_size = 2
    config.graceful_timeout = settings.graceful_timeout
    if settings.tls_certfile is not None:
        config.certfile = str(settings.tls_certfile)
        config.keyfile = str(settings.tls_keyfile)
        config.alpn_protocols = ["http/1.1"]  # see Settings.tls_certfile
        if settings.tls_ca_certs is not None:
            config.ca_certs = str(settings.tls_ca_certs)
            config.verify_mode = ssl.CERT_REQUIRED
    return config


async def serve(
    settings: Settings,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
    shutdown: trio.Event | None = None,
    worker_command: Sequence[str] | None = None,
    primary: bool = True,
    clock: Callable[[], float] = time.time,
    listen_fd: int | None = None,
    pass_fds: Sequence[int] = (),
) -> None:
    """Serve until SIGINT/SIGTERM (or ``shutdown`` is set); ``task_status`` gets the bound URLs.

    With ``settings.workers`` > 1 the primary (this process) starts ``workers - 1`` more
    processes with ``worker_command``, after its start-up repair, and they all accept on
    the one socket ``listen_fd`` (bound by ``streamd.startup``), which the workers inherit
    with the other ``pass_fds`` (the data dir's lock): no other server can share the port,
    as it could with ``SO_REUSEPORT``. A worker
    (``primary=False``) neither repairs nor runs the periodic jobs; it could not tell another
    worker's upload in progress from one a crash interrupted. Workers are children of the
    primary's nursery: a signal to the primary is passed on to them, and one that dies
    takes the server down (exit status 1), so that start-up repair runs before it serves
    again. ``clock`` is the wall clock of the periodic jobs.
    """
    server_serve = _use_server(settings)
    if shutdown is None:  # an Event has no truth value
        shutdown = trio.Event()
    extra = settings.workers - 1 if primary else 0
    if extra and worker_command is None:
        raise ValueError("workers > 1 needs the command that starts a worker")
    async with trio.open_nursery() as nursery:
        async with open_runtime(settings, nursery, primary=primary) as rt, \
                _upkeep(rt, primary=primary, clock=clock), \
                open_authenticator(settings) as auth:
            nursery.start_soon(_wait_for_signals, shutdown)
            for n in range(extra):
                assert worker_command is not None
                nursery.start_soon(_run_worker, list(worker_command), n + 1, shutdown,
                                   settings.graceful_timeout, tuple(pass_fds))
            if primary and settings.metrics_bind not in (None, "off"):  # /metrics alone
                nursery.start_soon(functools.partial(
                    server_serve, metrics_app(), _metrics_config(settings),
                    shutdown_trigger=shutdown.wait, mode="asgi"))
            app = create_app(rt, auth)
            await server_serve(
                app,
                server_config(settings, listen_fd),
                shutdown_trigger=shutdown.wait,
                task_status=task_status,
                mode="asgi",
            )
            shutdown.set()  # hypercorn may also stop on its own
            nursery.cancel_scope.cancel()


def _metrics_config(settings: Settings) -> Any:
    """The config of the listener that serves only ``/metrics`` on ``metrics_bind``."""
    config = importlib.import_module(f"{settings.http_server}.config").Config()
    config.bind = [settings.metrics_bind]
    config.accesslog = None
    config.errorlog = logging.getLogger(f"{settings.http_server}.error")
    return config


def _use_server(settings: Settings) -> Callable[..., Any]:
    """Import the ASGI server of ``settings``, set its socket read size, return its
    ``serve``; hypercorn first learns what streamd.hypercorn_h11 adds (zero copy when
    ``zero_copy``, JSON error bodies, the header timeout).

    Imported here, not at the top: only the one in use costs memory.
    """
    name = settings.http_server
    if name == "hypercorn":
        importlib.import_module("streamd.hypercorn_h11").install(
            zero_copy=settings.zero_copy, header_timeout=settings.header_timeout)
        tcp_server = importlib.import_module("hypercorn.trio.tcp_server")
        serve_fn = importlib.import_module("hypercorn.trio").serve
    else:
        tcp_server = importlib.import_module("anycorn.tcp_server")
        serve_fn = importlib.import_module("anycorn").serve
    tcp_server.MAX_RECV = SOCKET_READ
    return serve_fn  # type: ignore[no-any-return]


@asynccontextmanager
async def _upkeep(
    rt: Runtime, *, primary: bool, clock: Callable[[], float]
) -> AsyncIterator[None]:
    """What only the primary process does besides serving: start-up repair before any
    request (and any worker), then the periodic jobs (the repair again among them) until the
    block ends, closed before the runtime is. A worker does neither (see ``serve``)."""
    if not primary:
        yield
        return
    await repair(rt, startup=True)
    async with periodic_jobs(rt, clock=clock):
        yield


class WorkerDied(RuntimeError):
    """A worker process exited while the server was running."""


async def _run_worker(
    command: list[str], number: int, shutdown: trio.Event, graceful_timeout: float,
    pass_fds: tuple[int, ...] = (),
) -> None:
    """Run one worker process until ``shutdown``; then SIGTERM it and wait for it to drain.

    Not through cancellation: the nursery is cancelled only once the primary has drained,
    and the worker must stop accepting at the same time as the primary, not after.
    """
    async with trio.open_nursery() as nursery:
        process: trio.Process = await nursery.start(
            functools.partial(trio.run_process, command, check=False, pass_fds=pass_fds,
                              deliver_cancel=functools.partial(_kill_after, graceful_timeout))
        )
        log.info("worker %d started (pid %d)", number, process.pid)
        nursery.start_soon(_stop_on, shutdown, process, graceful_timeout)
        await process.wait()
        if not shutdown.is_set():
            shutdown.set()
            raise WorkerDied(f"worker {number} (pid {process.pid}) exited with "
                             f"{process.returncode}; stopping the server")
        nursery.cancel_scope.cancel()


async def _stop_on(shutdown: trio.Event, process: trio.Process, graceful_timeout: float) -> None:
    await shutdown.wait()
    await _kill_after(graceful_timeout, process)


async def _kill_after(graceful_timeout: float, process: trio.Process) -> None:
    """How a worker is stopped (on shutdown, or cancelled): SIGTERM, then SIGKILL if it
    does not drain in time."""
    process.send_signal(signal.SIGTERM)
    with trio.move_on_after(graceful_timeout + 5):
        await process.wait()
        return
    log.warning("worker pid %d did not stop in time: killing it", process.pid)
    process.kill()


async def _wait_for_signals(shutdown: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("received %s: shutting down", signal.Signals(signum).name)
            shutdown.set()
            return

"""What a cache miss's hop would cost with no copy in user space: splice and tee, no streamd.

The miss goal (P1.4: a first download through the cache >= 0.9x Swift's own GET) asks the
cache's hop (Swift's socket in, the client's socket and the cache file out) to cost next to
nothing beside Swift's own ~3 CPU-s per GiB on this 2-core VM. streamd's hop copies each
byte three times in user space (the receive, the page-cache write, the send) and costs
~1.0 CPU-s per GiB with memory warm. This probe measures the floor of a zero-copy hop: a
thread GETs the object from Swift on a raw socket, ``splice``s the socket into a pipe,
``tee``s it into a second pipe, and ``splice``s one pipe to the client's socket and the other
into a file; no hashing (an xxh3 of the entry would need its bytes read back), no HTTP
server, one client. Per round, in turn: curl straight from Swift, then curl through the hop
in each mode (``none``: no file; ``rewrite``: over the same file; ``new``: the last file
unlinked and a new one written)::

    .venv/bin/python -m bench.splice_hop [--rounds 5] [--modes none,rewrite,new]

Measured on the bench's VM (2026-12-06, 1 GiB), two sessions of 5 and 6 rounds, the first
round of each left out (new memory): Swift's own GET 1.86-2.47 s; the hop with no file
2.16-2.73 s at 0.45-0.58 CPU-s, rewriting a file 2.09-2.73 s at 0.55-0.79, a new file
2.04-2.82 s at 0.70-1.24. Paired per round, the hop with a file came to 0.69-1.06 of
Swift's own GET (median 0.87, 18 pairs), and with no file at all to 0.72-1.12 (median
0.80, 9 pairs): on 2 cores one more process in the chain, however cheap, costs about as
much as the 0.9 goal allows. streamd's copying hop: 0.74-0.80 with memory warm.
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import os
import re
import resource
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from bench.swiftserver import SwiftServer

STEP = 1 << 20  # bytes per splice, and the pipes' size
SPLICE_F_MOVE, SPLICE_F_MORE = 1, 4
F_SETPIPE_SZ = 1031
MODES = ("none", "rewrite", "new")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.tee.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_size_t, ctypes.c_uint]
_libc.tee.restype = ctypes.c_ssize_t


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _splice_all(src: int, dst: int, count: int, *, offset: int | None = None) -> None:
    while count:
        if offset is None:
            moved = os.splice(src, dst, count, flags=SPLICE_F_MOVE | SPLICE_F_MORE)
        else:
            moved = os.splice(src, dst, count, offset_dst=offset, flags=SPLICE_F_MOVE)
            offset += moved
        count -= moved


def hop(client: socket.socket, origin: tuple[str, int], path: str, token: str, mode: str,
        entry: Path) -> None:
    """Answer one GET on ``client`` with the object at ``path``, spliced from Swift."""
    client.recv(65536)
    with socket.create_connection(origin) as swift:
        swift.sendall(f"GET {path} HTTP/1.1\r\nHost: swift\r\nX-Auth-Token: {token}\r\n"
                      "Connection: close\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += swift.recv(65536)
        head, rest = head.split(b"\r\n\r\n", 1)
        found = re.search(rb"(?i)content-length: *(\d+)", head)
        if found is None:
            raise RuntimeError(f"Swift answered without a length: {head[:200]!r}")
        length = int(found.group(1))
        client.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                       % length)
        fd = -1
        if mode == "new":
            entry.unlink(missing_ok=True)
        if mode != "none":
            fd = os.open(entry, os.O_WRONLY | os.O_CREAT, 0o600)
        pipes = [*os.pipe(), *os.pipe()]  # read, write of the first; read, write of the second
        try:
            for p in pipes[1::2]:
                fcntl.fcntl(p, F_SETPIPE_SZ, STEP)
            client.sendall(rest)
            if fd >= 0:
                os.pwrite(fd, rest, 0)
            position = len(rest)
            while position < length:
                got = os.splice(swift.fileno(), pipes[1], min(STEP, length - position),
                                flags=SPLICE_F_MOVE)
                if got == 0:
                    raise RuntimeError(f"Swift's body ended at {position} of {length}")
                to_client = pipes[0]
                if fd >= 0:
                    if _libc.tee(pipes[0], pipes[3], got, 0) != got:
                        raise OSError(ctypes.get_errno(), "tee moved less than the pipe held")
                    _splice_all(pipes[0], fd, got, offset=position)
                    to_client = pipes[2]
                _splice_all(to_client, client.fileno(), got)
                position += got
        finally:
            for p in pipes:
                os.close(p)
            if fd >= 0:
                os.close(fd)


def _curl(url: str, headers: dict[str, str]) -> tuple[float, str]:
    args = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", url]
    for k, v in headers.items():
        args += ["-H", f"{k}: {v}"]
    t = time.monotonic()
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return time.monotonic() - t, out


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--size-mib", type=int, default=1024)
    opts = p.parse_args()
    modes = [m for m in opts.modes.split(",") if m]
    if not set(modes) <= set(MODES):
        p.error(f"modes are {', '.join(MODES)}")
    tmp = Path(tempfile.mkdtemp(prefix="splice-hop-"))
    try:
        with SwiftServer(tmp / "swift") as swift:
            storage, token = swift.token()
            auth = {"X-Auth-Token": token}
            httpx.put(f"{storage}/c", headers=auth).raise_for_status()
            data = tmp / "in.bin"
            subprocess.run(["dd", "if=/dev/urandom", f"of={data}", "bs=1M",
                            f"count={opts.size_mib}"], check=True, capture_output=True)
            subprocess.run(["curl", "-sSf", "-T", str(data), "-H", f"X-Auth-Token: {token}",
                            "-H", "Expect:", f"{storage}/c/obj"], check=True)
            data.unlink()
            url = urlsplit(storage)
            origin = (url.hostname or "127.0.0.1", url.port or 80)
            listener = socket.create_server(("127.0.0.1", 0))
            port = listener.getsockname()[1]
            pids = swift.pids()
            for rnd in range(opts.rounds):
                for mode in ["swift", *modes]:
                    before = {k: _proc_cpu(pid) for k, pid in pids.items()}
                    spent = [0.0]
                    if mode == "swift":
                        seconds, out = _curl(f"{storage}/c/obj", auth)
                    else:
                        def serve(mode: str = mode, spent: list[float] = spent) -> None:
                            client, _ = listener.accept()
                            with client:
                                start = _cpu()
                                hop(client, origin, f"{url.path}/c/obj", token, mode,
                                    tmp / "entry.bin")
                                spent[0] = _cpu() - start

                        thread = threading.Thread(target=serve)
                        thread.start()
                        seconds, out = _curl(f"http://127.0.0.1:{port}/obj", {})
                        thread.join()
                    used = {k: _proc_cpu(pid) - before[k] for k, pid in pids.items()}
                    print(f"round {rnd} {mode:8s} {seconds:5.2f} s  {out}  hop "
                          f"{spent[0]:.2f} CPU-s  Swift object {used.get('object', 0):.2f} "
                          f"proxy {used.get('proxy', 0):.2f}", flush=True)
                    time.sleep(1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

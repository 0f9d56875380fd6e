"""Per-stage upload figures, measured in-process on the same buffers, each in MiB/s.

An upload is: receive from the network, hash (md5 + ``os_hash_algo``, and xxh3 inside
streamd), write to the store, fsync. Timing each stage alone over the same 1 MiB chunks
shows which one bounds the end-to-end figure, so the next optimisation can be aimed:

- ``receive``: ``recv_into`` one reused buffer from a loopback TCP socket fed by a thread
  (the network stage with nothing else to do: a loopback sink);
- ``md5``, ``sha512``, ``xxh3_128``: one hasher, one core;
  ``md5+sha512.1thread``: both in turn per chunk; ``md5+sha512.2threads``: one thread each
  over all chunks at once (hashlib releases the GIL), what streamd's pipeline does;
- ``write``: the chunks written to a file in the data dir's file system, no fsync (page
  cache); ``fsync``: the fsync that follows, as bytes / its time; ``write+fsync``: both,
  the durable disk write rate; ``write.again``: the same chunks written over the same
  bytes of that file, its pages still in the page cache: no memory is taken for it, so
  ``write.again`` over ``write`` is what this machine charges for memory it has not used
  lately (a VM whose host takes free memory back: ~2 CPU-s per GiB here, see README's
  Swift section; a cache fill and Glance's cache pay it, a plain GET does not);
  ``read.cold``: the file read back after ``posix_fadvise(DONTNEED)`` (from the disk),
  ``read.cached``: read again (page cache);
- ``pipeline.*``: ``streamd.io.pipeline.store_stream`` from a memory source into a
  ``FileStore`` (or a ``MemoryStore``), when that module is importable.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import xxhash

MiB = 1024 * 1024
CHUNK = 1 * MiB  # the pipeline's chunk size: one update/write per MiB


def load_chunks(path: Path, total: int) -> list[bytes]:
    """The first ``total`` bytes of ``path`` as 1 MiB chunks (the buffers every stage uses)."""
    chunks = []
    with open(path, "rb") as f:
        while total > 0 and (chunk := f.read(min(CHUNK, total))):
            chunks.append(chunk)
            total -= len(chunk)
    return chunks


def _rate(nbytes: int, seconds: float) -> float:
    return nbytes / MiB / seconds


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def hash_rates(chunks: list[bytes]) -> dict[str, float]:
    """MiB/s of each hasher alone, md5+sha512 in one thread and in two threads."""
    nbytes = sum(map(len, chunks))

    def one(factory: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            h = factory()
            for c in chunks:
                h.update(c)  # type: ignore[attr-defined]

        return run

    def both_one_thread() -> None:
        m, s = hashlib.md5(), hashlib.sha512()
        for c in chunks:
            m.update(c)
            s.update(c)

    def both_two_threads() -> None:
        threads = [threading.Thread(target=one(f)) for f in (hashlib.md5, hashlib.sha512)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    return {
        "md5": _rate(nbytes, _timed(one(hashlib.md5))),
        "sha512": _rate(nbytes, _timed(one(hashlib.sha512))),
        "xxh3_128": _rate(nbytes, _timed(one(xxhash.xxh3_128))),
        "md5+sha512.1thread": _rate(nbytes, _timed(both_one_thread)),
        "md5+sha512.2threads": _rate(nbytes, _timed(both_two_threads)),
    }


def receive_rate(chunks: list[bytes], repeat: int = 1) -> float:
    """MiB/s of ``recv_into`` one reused buffer from loopback TCP, a thread sending ``chunks``."""
    nbytes = sum(map(len, chunks)) * repeat
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def send() -> None:
        with socket.create_connection(("127.0.0.1", port)) as s:
            for _ in range(repeat):
                for c in chunks:
                    s.sendall(c)

    sender = threading.Thread(target=send)
    sender.start()
    conn, _ = listener.accept()
    buf = memoryview(bytearray(CHUNK))
    got = 0
    t0 = time.perf_counter()
    with conn, listener:
        while got < nbytes:
            n = conn.recv_into(buf)
            if n == 0:
                break
            got += n
    seconds = time.perf_counter() - t0
    sender.join()
    return _rate(got, seconds)


def disk_rates(chunks: list[bytes], directory: Path) -> dict[str, float]:
    """write (page cache), fsync, write+fsync, read.cold and read.cached in MiB/s."""
    nbytes = sum(map(len, chunks))
    path = directory / f".bench-disk-{os.getpid()}.tmp"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            t0 = time.perf_counter()
            for c in chunks:
                os.write(fd, c)
            t1 = time.perf_counter()
            os.fsync(fd)
            t2 = time.perf_counter()
        finally:
            os.close(fd)
        out = {"write": _rate(nbytes, t1 - t0), "fsync": _rate(nbytes, t2 - t1),
               "write+fsync": _rate(nbytes, t2 - t0)}
        fd = os.open(path, os.O_WRONLY)
        try:
            position = 0
            t0 = time.perf_counter()
            for c in chunks:
                os.pwrite(fd, c, position)
                position += len(c)
            out["write.again"] = _rate(nbytes, time.perf_counter() - t0)
            os.fsync(fd)  # clean again: the fadvise below drops it
        finally:
            os.close(fd)
        buf = memoryview(bytearray(CHUNK))
        fd = os.open(path, os.O_RDONLY)
        try:
            # clean pages after the fsync, so this drops this file (only) from the page cache
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            for name in ("read.cold", "read.cached"):
                os.lseek(fd, 0, os.SEEK_SET)
                t0 = time.perf_counter()
                while os.readv(fd, [buf]):
                    pass
                out[name] = _rate(nbytes, time.perf_counter() - t0)
        finally:
            os.close(fd)
        return out
    finally:
        path.unlink(missing_ok=True)


def pipeline_rates(chunks: list[bytes], directory: Path) -> dict[str, float]:
    """``store_stream`` from memory into a FileStore and a MemoryStore; {} when unavailable."""
    try:
        import trio

        from streamd.io.pipeline import store_stream
        from streamd.io.sources import BytesSource
        from streamd.io.stores.file import FileStore
        from streamd.io.stores.memory import MemoryStore
    except ImportError:
        return {}
    data = b"".join(chunks)
    out: dict[str, float] = {}
    root = directory / f".bench-pipeline-{os.getpid()}"
    for algo in ("sha512", "xxh3_128"):
        for store_name in ("file", "memory"):
            store = FileStore(root) if store_name == "file" else MemoryStore()

            async def run(store: object = store, algo: str = algo) -> float:
                t0 = time.perf_counter()
                res = await store_stream(BytesSource(data), store,  # type: ignore[arg-type]
                                         key=f"bench-{algo}", os_hash_algo=algo)
                seconds = time.perf_counter() - t0
                await store.delete(res.location)  # type: ignore[attr-defined]
                return seconds

            out[f"pipeline.{store_name}.{algo}"] = _rate(len(data), trio.run(run))
    try:
        root.rmdir()
    except OSError:
        pass
    return out


def measure(chunks: list[bytes], directory: Path) -> tuple[dict[str, float], list[str]]:
    """Every stage once; the figures in MiB/s and notes on what could not be measured."""
    notes: list[str] = []
    out = {"receive": receive_rate(chunks)}
    out.update(hash_rates(chunks))
    out.update(disk_rates(chunks, directory))
    try:
        pipe = pipeline_rates(chunks, directory)
    except Exception as e:  # another engineer's module in progress: report, don't stop
        pipe = {}
        notes.append(f"stages: streamd.io.pipeline failed: {type(e).__name__}: {e}")
    if not pipe and not notes:
        notes.append("stages: streamd.io.pipeline not importable; pipeline not timed")
    out.update(pipe)
    return out, notes

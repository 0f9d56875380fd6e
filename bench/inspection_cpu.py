"""CPU seconds per GiB of the disk-format inspector, alone (no server, no I/O).

Feeds an image to ``streamd.io.inspection.DiskInspector`` in the pipeline's chunks, from
one buffer reused as the pipeline reuses its own, and reports the process CPU time per GiB
(best of ``--runs``), beside md5 over the same chunks for scale::

    .venv/bin/python -m bench.inspection_cpu [--size 1GiB] [--chunk 1MiB] [--runs 3]

Formats: a qcow2 header then data (the inspectors drop out after the headers), raw data,
and a streamOptimized vmdk (its footer region copies the tail of every chunk: the worst
case).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import struct
import time
from collections.abc import Callable

from bench.__main__ import parse_size
from streamd.io.inspection import DiskInspector

GiB = 1 << 30


def qcow2_header(size: int) -> bytes:
    """A qcow2 v3 header (64 KiB clusters) of a ``size``-byte disk: all the inspector reads."""
    return struct.pack(">4sIQIIQ", b"QFI\xfb", 3, 0, 0, 16, size) + bytes(72 - 32) + struct.pack(
        ">QQQII", 0, 0, 0, 4, 104)


def vmdk_stream_optimized_head(size: int) -> bytes:
    """A streamOptimized vmdk's header and descriptor: its grain directory is at the end, so
    the inspector keeps the last 1.5 KiB of the stream (the footer) as it goes."""
    header = struct.pack("<4sIIQQQQIQQQBccccH", b"KDMV", 3, 0x30001, size // 512, 128, 1, 20,
                         512, 0, 0xFFFFFFFFFFFFFFFF, 128, 0, b"\n", b" ", b"\r", b"\n", 1)
    descriptor = ('# Disk DescriptorFile\nversion=1\ncreateType="streamOptimized"\n'
                  f'RW {size // 512} SPARSE "disk.vmdk"\n').encode()
    return header + bytes(512 - len(header)) + descriptor + bytes(20 * 512 - len(descriptor))


def _cpu_per_gib(feed: Callable[[memoryview], None], head: bytes, size: int,
                 chunk: int) -> float:
    buf = bytearray(os.urandom(chunk))
    buf[:len(head)] = head
    view = memoryview(buf)
    start = time.process_time()
    done = 0
    while done < size:
        n = min(chunk, size - done)
        feed(view[:n])
        if done == 0:
            view[:len(head)] = os.urandom(len(head))  # the header only once
        done += n
    return (time.process_time() - start) / (size / GiB)


def measure(size: int, chunk: int, runs: int) -> dict[str, float]:
    heads = {"qcow2": qcow2_header(size), "raw": b"",
             "vmdk-streamOptimized": vmdk_stream_optimized_head(size)}
    results = {}
    for name, head in heads.items():
        best = float("inf")
        for _ in range(runs):
            inspector = DiskInspector()
            best = min(best, _cpu_per_gib(inspector.eat, head, size, chunk))
        results[f"inspect {name}"] = best
    md5 = hashlib.md5()
    results["md5 (for scale)"] = min(_cpu_per_gib(md5.update, b"", size, chunk)
                                     for _ in range(runs))
    return results


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.inspection_cpu")
    p.add_argument("--size", type=parse_size, default=GiB)
    p.add_argument("--chunk", type=parse_size, default=1 << 20)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    for name, cpu in measure(args.size, args.chunk, args.runs).items():
        print(f"{name:24s} {cpu:7.3f} CPU-s/GiB  ({args.chunk // 1024} KiB chunks)")


if __name__ == "__main__":
    main()

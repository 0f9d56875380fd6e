"""The server caps glibc's malloc arenas (streamd.malloc_arenas): threads that allocate at
once share two arenas instead of getting one each. Counted by glibc itself (malloc_info),
in a fresh interpreter, so the cap is set before any thread exists."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

COUNT_ARENAS = """
import ctypes, sys, tempfile, threading
from streamd.malloc_arenas import limit_arenas

print(limit_arenas())
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
start = threading.Barrier(8)

def allocate():
    start.wait()
    for _ in range(50):  # ctypes calls drop the GIL: the eight threads allocate at once
        libc.free(libc.malloc(64 * 1024))

threads = [threading.Thread(target=allocate) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
with tempfile.NamedTemporaryFile() as f:
    out = libc.fopen(f.name.encode(), b"w")
    libc.malloc_info(0, out)
    libc.fclose(out)
    print(open(f.name).read().count("<heap nr="))
"""


def run(env: dict[str, str]) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", COUNT_ARENAS], cwd=REPO, env=env, text=True,
                         capture_output=True, check=True, timeout=60).stdout.split()
    return out[0], int(out[1])


def test_threads_share_two_arenas() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    limited, arenas = run(env)
    assert limited == "True" and arenas <= 2  # (9 here without the cap, on 2 cores)


def test_an_operators_malloc_arena_max_wins() -> None:
    limited, arenas = run({**os.environ, "MALLOC_ARENA_MAX": "3"})
    assert limited == "False" and arenas <= 3

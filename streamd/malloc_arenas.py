"""How many malloc arenas the server process may use: fewer arenas, less memory kept.

glibc gives each thread that allocates while another holds the main arena an arena of its
own, up to 8 per core, and keeps what each one grew to. A server's worker threads (registry
calls, hashers, store I/O) allocate in turns, so a busy hour leaves a few MiB scattered
over arenas that only one of them reuses: 1000 image creates and a 1000-image listing kept
~5 MiB more with the default than with 2 (81 -> 78 MiB after them, 89 -> 84 MiB in a run
that uploaded first), and 8 uploads after them peaked 4 MiB lower (100 -> 96 MiB). The
threads mostly wait on the GIL, on a socket or on a disk, so they seldom contend for an arena.
"""

from __future__ import annotations

import ctypes
import os

ARENAS = 2  # the main arena and one for the worker threads: see above
M_ARENA_MAX = -8  # glibc's malloc.h


def limit_arenas(count: int = ARENAS) -> bool:
    """Cap this process's malloc arenas at ``count``, before it starts any thread.

    An operator's ``MALLOC_ARENA_MAX`` wins. False where this is not glibc (musl, macOS)
    or glibc refused.
    """
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the interpreter runs on
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_ARENA_MAX, count))

"""The bench's delayed link (bench/delayline.py): a TCP connection into its namespace takes
the round trip it was given, and bytes cross it unchanged in both directions."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

from bench.delayline import NS_ADDR, DelayedLink, connect_time

ECHO = """
import socket
s = socket.create_server((%r, 7007), backlog=16)
print("ready", flush=True)
while True:
    conn, _ = s.accept()
    while data := conn.recv(1 << 20):
        conn.sendall(data)
    conn.close()
"""


def test_a_delayed_link_delays_and_keeps_the_bytes() -> None:
    assert os.geteuid() == 0, "the bench's delayed link needs root (ip netns, /dev/net/tun)"
    with DelayedLink(0.025, name="sdtest") as link:
        echo = subprocess.Popen([*link.prefix(), sys.executable, "-c", ECHO % NS_ADDR],
                                stdout=subprocess.PIPE, text=True)
        try:
            assert echo.stdout is not None and echo.stdout.readline().strip() == "ready"
            # a handshake is one round trip: 2 x 25 ms
            assert 0.05 <= connect_time(NS_ADDR, 7007, tries=3) < 0.5
            data = os.urandom(4 * 1024 * 1024)
            t0 = time.monotonic()
            with socket.create_connection((NS_ADDR, 7007), timeout=10) as conn:
                conn.sendall(data)
                conn.shutdown(socket.SHUT_WR)
                back = bytearray()
                while chunk := conn.recv(1 << 20):
                    back += chunk
            assert bytes(back) == data
            assert time.monotonic() - t0 >= 0.1  # connect, then data out and back: 2+ trips
        finally:
            echo.kill()
            echo.wait()
    assert subprocess.run(["ip", "netns", "list"], capture_output=True,
                          text=True).stdout.count("sdtest") == 0

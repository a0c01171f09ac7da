"""Free TCP ports for the servers this project starts itself (demo, API, tests, benchmarks).

One implementation for the embedded demo servers, the API process helper, the test harness and
the benchmarks (each had its own copy). The kernel picks the port (bind to port 0); the sockets
are closed again before returning, so another process may still take a port before it is used:
start the server at once, and treat "address in use" at start as a reason to choose again.
"""

from __future__ import annotations

import socket


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct TCP ports free on ``host`` a moment ago. The sockets are held open
    together while choosing, so no port repeats."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind((host, 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port(host: str = "127.0.0.1") -> int:
    """One TCP port free on ``host`` a moment ago (also a port nothing listens on, for tests
    of an unreachable service)."""
    return free_ports(1, host)[0]

"""Loopback ports: one nothing listens on, and one a server can keep across restarts."""

from __future__ import annotations

import random
import socket
from pathlib import Path

EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST = 10_000


def free_port() -> int:
    """A loopback port that was free a moment ago (bound, then released).

    NOTE: another process may take it at any time, so use it only where nothing of ours has
    to listen on it (an unreachable target, a dead endpoint); servers take `server_port()`.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_port(host: str = "127.0.0.1") -> int:
    """A free port below the kernel's ephemeral range, for a server that may restart on it.

    Port 0 would hand out an ephemeral port, and while its server is down any outgoing
    connection may be given it as a local port (a client retrying the dead port can even
    connect to itself), so the restart finds it taken. Below the range only another test's
    explicit choice can collide, which `bindable` and a retry cover.
    """
    low = int(EPHEMERAL.read_text().split()[0]) if EPHEMERAL.exists() else 0
    if low <= LOWEST + 1_000:
        return free_port()
    while True:
        port = random.randrange(LOWEST, low)
        if bindable(host, port):
            return port


def bindable(host: str, port: int) -> bool:
    """Whether a listening socket could bind host:port now (as our servers bind, with
    SO_REUSEADDR)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
        return True

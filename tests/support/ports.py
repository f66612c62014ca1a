"""Loopback ports for addresses nothing should be listening on."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A loopback port that was free a moment ago (bound, then released).

    NOTE: another process may take it at any time, so use it only where nothing of ours has
    to listen on it (an unreachable target, a dead endpoint). Servers bind port 0 and report
    the port they got (`support.processes`).
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])

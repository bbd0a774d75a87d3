"""Loopback ports for test and benchmark servers."""

from __future__ import annotations

import os
import random
import socket

# Ports for test servers come from below the kernel's ephemeral range (32768-60999 on Debian).
# A port the kernel hands out for bind(0) is also one it may pick as the local port of the next
# outgoing connection (to PostgreSQL, Redis, a sink), so a server binding it a moment later could
# find it taken. Ports are never handed out twice in one test run, and each pytest-xdist worker
# (gw0, gw1, ...) draws from its own slice of the range, so parallel workers never race for one.
_FIRST, _LAST = 20000, 32000


def _port_range() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker.startswith("gw") or count < 2:
        return range(_FIRST, _LAST)
    size = (_LAST - _FIRST) // count
    start = _FIRST + int(worker[2:]) * size
    return range(start, start + size)


_PORT_RANGE = _port_range()
_handed_out: set[int] = set()


def _bindable(port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_port() -> int:
    """A loopback port free for TCP and UDP, outside the ephemeral range, not given out before."""
    while True:
        port = random.choice(_PORT_RANGE)
        if port not in _handed_out and _bindable(port):
            _handed_out.add(port)
            return port


def free_port_range(count: int) -> range:
    """``count`` consecutive loopback ports, each as free_port would give it."""
    while True:
        start = random.choice(_PORT_RANGE[:-count])
        ports = range(start, start + count)
        if not _handed_out.intersection(ports) and all(_bindable(port) for port in ports):
            _handed_out.update(ports)
            return ports

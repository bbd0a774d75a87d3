"""Loopback ports for test and benchmark servers."""

from __future__ import annotations

import os
import random
import socket

# Ports for test servers come from below the kernel's ephemeral range (32768-60999 on Debian).
# A port the kernel hands out for bind(0) is also one it may pick as the local port of the next
# outgoing connection (to PostgreSQL, Redis, a sink), so a server binding it a moment later could
# find it taken. Ports are never handed out twice in one test run, and each pytest-xdist worker
# (gw0, gw1, ...) draws from its own slice of each area, so parallel workers never race for one.
# Single ports are drawn at random from 20000-31999; runs of consecutive ports (SMTP_LISTEN
# ranges) are taken one after the other from 10000-19999, where the single ports scattered over
# the other area cannot split them.
_SINGLE = range(20000, 32000)
_RUNS = range(10000, 20000)


def _worker_slice(area: range) -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker.startswith("gw") or count < 2:
        return area
    size = len(area) // count
    start = area.start + int(worker[2:]) * size
    return range(start, start + size)


_SINGLE_SLICE = _worker_slice(_SINGLE)
_RUNS_SLICE = _worker_slice(_RUNS)
_handed_out: set[int] = set()
_next_run = _RUNS_SLICE.start


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
        port = random.choice(_SINGLE_SLICE)
        if port not in _handed_out and _bindable(port):
            _handed_out.add(port)
            return port


def free_port_range(count: int) -> range:
    """``count`` consecutive loopback ports, each free for TCP and UDP and not given out before.

    Runs are taken in order from this process's slice of 10000-19999; a port someone else holds
    moves the search past it. Raises RuntimeError when the slice has no such run left."""
    global _next_run
    start = _next_run
    while start + count <= _RUNS_SLICE.stop:
        taken = next((port for port in range(start, start + count) if not _bindable(port)), None)
        if taken is None:
            _next_run = start + count
            _handed_out.update(range(start, start + count))
            return range(start, start + count)
        start = taken + 1
    raise RuntimeError(f"no run of {count} free ports left in {_RUNS_SLICE.start}-{_RUNS_SLICE.stop - 1}")

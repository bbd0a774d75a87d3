"""SMTP_LISTEN read into listeners: `[ADDRESS:]PORT[-LAST]/MODE[/mx]`, comma separated."""

from __future__ import annotations

import re
from dataclasses import dataclass

_LISTEN = re.compile(
    r"^(?:(?P<host>\[[0-9a-fA-F:.]+\]|[^:/\s]+):)?(?P<port>\d+)(?:-(?P<last>\d+))?/(?P<mode>[^/]*)(?P<mx>/mx)?$"
)
MODES = ("starttls", "tls")
# Each port is a listening socket (two on a wildcard address: IPv4 and IPv6); past this many ports
# a firewall redirect onto one port costs nothing (docs/operations.md, docs/benchmarks.md).
MAX_RANGE_PORTS = 5000


@dataclass(frozen=True)
class Listener:
    host: str | None  # None: every interface (IPv4 and IPv6)
    port: int  # the first port of a range
    mode: str  # starttls | tls
    mx: bool  # accepts unauthenticated mail for local domains (port 25, or a spec ending in /mx)
    last: int | None = None  # the last port of a range; None: the one port

    @property
    def ports(self) -> range:
        return range(self.port, (self.last or self.port) + 1)

    @property
    def port_text(self) -> str:
        return f"{self.port}-{self.last}" if self.last else str(self.port)

    def __str__(self) -> str:
        host = self.host or "*"
        return f"{host}:{self.port_text}/{self.mode}" + ("/mx" if self.mx and self.port != 25 else "")

    def overlaps(self, other: Listener) -> bool:
        same_address = None in (self.host, other.host) or self.host == other.host
        return same_address and self.port <= other.ports[-1] and other.port <= self.ports[-1]


def parse_listeners(spec: str) -> list[Listener]:
    """Parse SMTP_LISTEN (`[ADDRESS:]PORT[-LAST]/MODE[/mx]`, comma separated); raise ValueError
    with a sentence on nonsense: no match, unknown mode, a port out of 1-65535, a reversed or
    too large range, two entries sharing a port."""
    listeners: list[Listener] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        listener = _parse_one(part)
        clash = next((seen for seen in listeners if seen.overlaps(listener)), None)
        if clash:
            raise ValueError(f"SMTP_LISTEN: {part!r} overlaps {str(clash)!r}: a port can be listed once")
        listeners.append(listener)
    return listeners


def _parse_one(part: str) -> Listener:
    match = _LISTEN.match(part)
    if not match:
        raise ValueError(f"SMTP_LISTEN: cannot read {part!r} (expected [ADDRESS:]PORT[-LAST]/starttls|tls)")
    if match["mode"] not in MODES:
        raise ValueError(f"SMTP_LISTEN: cannot read {part!r}: unknown mode {match['mode']!r} (starttls or tls)")
    port = int(match["port"])
    last = int(match["last"]) if match["last"] else None
    for number in (port, last):
        if number is not None and not 0 < number < 65536:
            raise ValueError(f"SMTP_LISTEN: cannot read {part!r}: port {number} is not in 1-65535")
    if last is not None:
        if last <= port:
            raise ValueError(f"SMTP_LISTEN: cannot read {part!r}: a range goes from a lower port to a higher one")
        if last - port + 1 > MAX_RANGE_PORTS:
            raise ValueError(
                f"SMTP_LISTEN: cannot read {part!r}: {last - port + 1} ports, a range holds at most "
                f"{MAX_RANGE_PORTS} (redirect more with the firewall instead: docs/operations.md)"
            )
    host = match["host"].strip("[]") if match["host"] else None
    return Listener(host, port, match["mode"], bool(match["mx"]) or (port == 25 and last is None), last)

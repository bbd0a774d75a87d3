"""SMTP_LISTEN read into listeners: `[ADDRESS:]PORT/MODE[/mx]`, comma separated."""

from __future__ import annotations

import re
from dataclasses import dataclass

_LISTEN = re.compile(
    r"^(?:(?P<host>\[[0-9a-fA-F:.]+\]|[^:/\s]+):)?(?P<port>\d{1,5})/(?P<mode>starttls|tls)(?P<mx>/mx)?$")


@dataclass(frozen=True)
class Listener:
    host: str | None  # None: every interface (IPv4 and IPv6)
    port: int
    mode: str  # starttls | tls
    mx: bool  # accepts unauthenticated mail for local domains (port 25, or a spec ending in /mx)

    def __str__(self) -> str:
        host = self.host or "*"
        return f"{host}:{self.port}/{self.mode}" + ("/mx" if self.mx and self.port != 25 else "")


def parse_listeners(spec: str) -> list[Listener]:
    """Parse SMTP_LISTEN (`[ADDRESS:]PORT/MODE[/mx]`, comma separated); raise ValueError on nonsense."""
    listeners = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        match = _LISTEN.match(part)
        if not match or not 0 < int(match["port"]) < 65536:
            raise ValueError(f"SMTP_LISTEN: cannot read {part!r} (expected [ADDRESS:]PORT/starttls|tls)")
        host = match["host"].strip("[]") if match["host"] else None
        port = int(match["port"])
        listeners.append(Listener(host, port, match["mode"], bool(match["mx"]) or port == 25))
    return listeners

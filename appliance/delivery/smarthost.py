"""SMARTHOST: one upstream relay for all mail, with AUTH over a verified TLS connection."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit


@dataclass(frozen=True)
class Smarthost:
    host: str
    port: int
    implicit_tls: bool  # smtps:// (RFC 8314); smtp:// means STARTTLS, which is then required
    username: str
    password: str

    def __str__(self) -> str:
        return f"{'smtps' if self.implicit_tls else 'smtp'}://{self.host}:{self.port}"


def parse(url: str) -> Smarthost | None:
    """Read SMARTHOST (`smtp://user:pass@host:port` or `smtps://…`); None when it is empty."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError(f"SMARTHOST: expected smtp://user:pass@host:port or smtps://…, got {url!r}")
    implicit = parts.scheme == "smtps"
    return Smarthost(
        host=parts.hostname,
        port=parts.port or (465 if implicit else 587),
        implicit_tls=implicit,
        username=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
    )


def tls_context(ca_file: str) -> ssl.SSLContext:
    """Return a client context that verifies the smarthost (against ca_file when given)."""
    ctx = ssl.create_default_context(cafile=ca_file or None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx

"""TRUSTED_PROXIES: the peers whose X-Forwarded-For, -Proto and -Host are believed."""

from __future__ import annotations

import ipaddress

from werkzeug.middleware.proxy_fix import ProxyFix

from ..config import ConfigError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse(spec: str) -> tuple[Network, ...]:
    """Read TRUSTED_PROXIES (addresses or CIDRs separated by commas); a bad entry is a ConfigError."""
    networks = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ConfigError(f"TRUSTED_PROXIES: {part!r} is not an address or a CIDR") from None
    return tuple(networks)


def _peer(remote_addr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(remote_addr.split("%")[0])
    except ValueError:
        return None
    return getattr(address, "ipv4_mapped", None) or address  # ::ffff:10.0.0.5 on a dual-stack socket


class TrustedProxies:
    """WSGI middleware: werkzeug's ProxyFix (one hop of X-Forwarded-For, -Proto and -Host) for a
    request whose peer (REMOTE_ADDR) is in TRUSTED_PROXIES; any other request reaches the app as it
    came, so its forwarded headers change neither ``request.remote_addr``, nor the scheme (and so
    neither HSTS nor the Secure cookie flag), nor the host. The headers themselves are left in place:
    /metrics refuses a forwarded request from loopback whoever forwarded it."""

    def __init__(self, app, networks: tuple[Network, ...]):
        self.app = app
        self.networks = networks
        self.fixed = ProxyFix(app, x_for=1, x_proto=1, x_host=1)

    def trusts(self, remote_addr: str) -> bool:
        peer = _peer(remote_addr)
        return peer is not None and any(peer in network for network in self.networks)

    def __call__(self, environ, start_response):
        if self.networks and self.trusts(environ.get("REMOTE_ADDR", "")):
            return self.fixed(environ, start_response)
        return self.app(environ, start_response)

"""Step 1, route: where a destination's mail goes (MX hosts in preference order, or the smarthost)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from .. import dns
from . import smarthost as smarthost_mod
from .replies import Reply


@dataclass(frozen=True)
class Target:
    name: str  # MX host name (TLS SNI, attempt log) or the smarthost's host
    address: str  # IP to connect to (the smarthost's host name is resolved by the system)
    port: int


@dataclass(frozen=True)
class Route:
    destination: str
    targets: tuple[Target, ...]
    smarthost: smarthost_mod.Smarthost | None = None


class RouteError(Exception):
    """No route: ``reply`` says why, and whether it is worth trying again (4xx) or not (5xx)."""

    def __init__(self, reply: Reply):
        super().__init__(str(reply))
        self.reply = reply


def order_mx(records: list[tuple[int, str]]) -> list[str]:
    """Sort MX hosts by preference, shuffling hosts of equal preference (RFC 5321 §5.1)."""
    shuffled = list(records)
    random.shuffle(shuffled)
    return [host for _, host in sorted(shuffled, key=lambda r: r[0])]  # sort is stable


def route(settings: dict, domain: str) -> Route:
    """Step 1, route: return the route for mail to ``domain``, or raise RouteError."""
    upstream = smarthost_mod.parse(settings["SMARTHOST"])
    if upstream is not None:
        return Route(str(upstream), (Target(upstream.host, upstream.host, upstream.port),), upstream)
    port = int(settings["DELIVERY_PORT"])
    try:
        records = dns.mx_records(settings, domain)
    except dns.NoSuchDomain:
        raise RouteError(Reply(550, "5.1.2", f"domain {domain} does not exist (DNS NXDOMAIN)")) from None
    except dns.DnsError as exc:
        raise RouteError(Reply(451, "4.4.3", f"MX lookup for {domain} failed: {exc}")) from None
    if any(host in ("", ".") for _, host in records):
        # RFC 7505 §3: a null MX says the domain accepts no mail; fail at once, do not retry.
        raise RouteError(Reply(556, "5.1.10", f"{domain} accepts no mail (null MX, RFC 7505)"))
    hosts = order_mx(records) if records else [domain]  # RFC 5321 §5.1: no MX, the domain itself
    targets, problems = [], []
    for host in hosts:
        try:
            targets += [Target(host, address, port) for address in dns.addresses(settings, host)]
        except dns.DnsError as exc:
            problems.append(exc)
    if targets:
        return Route(domain, tuple(targets))
    if not records and not any(p.temporary for p in problems):
        raise RouteError(Reply(550, "5.4.4", f"{domain} has no MX and no address record"))
    detail = "; ".join(str(p) for p in problems) or "its MX hosts have no address"
    raise RouteError(Reply(451, "4.4.3", f"no address for the mail servers of {domain}: {detail}"))

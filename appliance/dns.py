"""The one door to dnspython: a resolver built from DNS_SERVERS and the lookups delivery needs."""

from __future__ import annotations

import functools
import ipaddress

import dns.exception
import dns.nameserver
import dns.resolver


class DnsError(Exception):
    """A lookup did not give an answer; ``temporary`` says whether trying later may help."""

    temporary = True


class DnsTimeout(DnsError):
    """No server answered within DNS_TIMEOUT (or every server failed): try later."""


class NoSuchDomain(DnsError):
    """The name does not exist (NXDOMAIN): a permanent answer."""

    temporary = False


def parse_servers(spec: str) -> list[tuple[str, int]]:
    """Read DNS_SERVERS (`ip[:port],…`; IPv6 as `[ip]:port`) into (address, port) pairs."""
    servers = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if part.startswith("["):
            address, _, rest = part[1:].partition("]")
            port = rest.removeprefix(":") or "53"
        elif part.count(":") == 1:
            address, port = part.split(":")
        else:
            address, port = part, "53"
        if not port.isdigit():
            raise ValueError(f"DNS_SERVERS: cannot read {part!r} (expected ip[:port])")
        servers.append((address, int(port)))
    return servers


@functools.lru_cache(maxsize=8)
def resolver(servers: str, timeout: float, cached: bool = True) -> dns.resolver.Resolver:
    """Return a resolver for DNS_SERVERS (empty: the system's) that gives up after ``timeout`` s.

    ``cached=False`` gives one without an answer cache: a domain check must see a record (or its
    removal) as soon as it is published, not after a cached answer's TTL."""
    if servers:
        res = dns.resolver.Resolver(configure=False)
        res.nameservers = [dns.nameserver.Do53Nameserver(a, p) for a, p in parse_servers(servers)]
    else:
        res = dns.resolver.Resolver()
    res.lifetime = timeout
    res.timeout = timeout
    if cached:
        res.cache = dns.resolver.LRUCache(4096)  # answers are reused for their TTL
    return res


def _query(settings: dict, name: str, rdtype: str, cached: bool = True) -> list:
    res = resolver(settings["DNS_SERVERS"], float(settings["DNS_TIMEOUT"]), cached)
    try:
        return list(res.resolve(name, rdtype, search=False))
    except dns.resolver.NXDOMAIN:
        raise NoSuchDomain(f"{name}: no such domain") from None
    except dns.resolver.NoAnswer:
        return []
    except dns.exception.Timeout:
        raise DnsTimeout(f"{name} {rdtype}: DNS timeout") from None
    except dns.resolver.NoNameservers as exc:  # SERVFAIL/REFUSED everywhere: a broken zone or server
        raise DnsTimeout(f"{name} {rdtype}: no server answered ({exc})") from None


def mx_records(settings: dict, domain: str, cached: bool = True) -> list[tuple[int, str]]:
    """Return the domain's MX records as (preference, host without trailing dot); [] when none."""
    return [(r.preference, r.exchange.to_text(omit_final_dot=True)) for r in _query(settings, domain, "MX", cached)]


def addresses(settings: dict, host: str) -> list[str]:
    """Return the host's IPv4 then IPv6 addresses; [] when it has none."""
    found = [r.address for r in _query(settings, host, "A")]
    try:
        found += [r.address for r in _query(settings, host, "AAAA")]
    except DnsError:
        if not found:  # AAAA trouble only matters when there is no A record to fall back on
            raise
    return found


def txt_records(settings: dict, name: str) -> list[str]:
    """Return the name's TXT records, each with its strings joined (RFC 7208 §3.3); [] when none."""
    return [b"".join(r.strings).decode("utf-8", "replace") for r in _query(settings, name, "TXT", cached=False)]


def ipv4_addresses(settings: dict, name: str) -> list[str]:
    """Return the name's A records, fresh from DNS; [] when none (a DNSBL answer, RFC 5782 §2.3)."""
    return [r.address for r in _query(settings, name, "A", cached=False)]


def reverse_names(settings: dict, address: str) -> list[str]:
    """Return the PTR names of an IP address, fresh from DNS, without the final dot; [] when none."""
    name = ipaddress.ip_address(address).reverse_pointer
    return [r.target.to_text(omit_final_dot=True) for r in _query(settings, name, "PTR", cached=False)]


def records(settings: dict, name: str, rdtype: str) -> list:
    """Return the name's records of ``rdtype`` as dnspython rdata, fresh from DNS; [] when none (for
    the libraries that take a lookup function: pyspf, dkimpy)."""
    return _query(settings, name, rdtype, cached=False)

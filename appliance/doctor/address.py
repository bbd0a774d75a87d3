"""Checks of names and addresses: DNS of HOSTNAME, the PTR of the outbound address, DNS blocklists."""

from __future__ import annotations

import functools
import ipaddress
import socket

from .. import dns, domains
from .base import FAIL, OK, WARN, Result

# DNSBLs that big receivers consult, free for low-volume queries. Barracuda's answers only
# resolvers it knows (registration is free); others are refused or get no answer (a WARN).
BLOCKLISTS = ("zen.spamhaus.org", "bl.spamcop.net", "b.barracudacentral.org")
DELIST_PAGES = {
    "zen.spamhaus.org": "https://check.spamhaus.org/",
    "bl.spamcop.net": "https://www.spamcop.net/bl.shtml",
    "b.barracudacentral.org": "https://www.barracudacentral.org/rbl/removal-request",
}
_LISTED = ipaddress.ip_network("127.0.0.0/24")  # RFC 5782 §2.1: 127.0.0.2 and up say "listed"
_REFUSED = ipaddress.ip_network("127.255.255.0/24")  # Spamhaus: error codes, not listings

# Documentation addresses (RFC 5737, RFC 3849): a UDP connect() to them picks the source address
# of the default route without sending a packet, and nothing is there to receive one anyway.
_ROUTE_PROBES = (("192.0.2.1", socket.AF_INET), ("2001:db8::1", socket.AF_INET6))


# -- DNS of HOSTNAME ---------------------------------------------------------------------------
def check_dns(settings: dict) -> Result:
    """Check that HOSTNAME is a public name with an address (A or AAAA)."""
    hostname = settings["HOSTNAME"]
    if domains.hostname_problem(hostname):  # the one rule the records, the set-up and the banner use
        return Result(
            "dns",
            hostname,
            FAIL,
            f"HOSTNAME {hostname!r} is not a public name",
            "set HOSTNAME to the name the appliance is known by, e.g. mail.example.com",
        )
    try:
        found = dns.addresses(settings, hostname)
    except dns.NoSuchDomain:
        found = []
    except dns.DnsError as exc:
        return Result("dns", hostname, WARN, f"could not check: {exc}", "is DNS working here? (DNS_SERVERS)")
    if not found:
        return Result(
            "dns",
            hostname,
            FAIL,
            f"{hostname} has no A or AAAA record",
            f"publish an A record for {hostname} with the appliance's public address",
        )
    return Result("dns", hostname, OK, f"{hostname} resolves to {', '.join(found)}")


# -- the outbound address: PTR and blocklists ---------------------------------------------------
def outbound_ip() -> str | None:
    """Return the source address the kernel picks towards the internet; None without a route."""
    for probe, family in _ROUTE_PROBES:
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.connect((probe, 53))  # UDP: sets the route and source address, sends nothing
                return sock.getsockname()[0]
        except OSError:
            continue
    return None


def is_public(ip: str) -> bool:
    """Tell whether an address is routable on the internet (not private, loopback, CGNAT, …)."""
    return ipaddress.ip_address(ip).is_global


def _same_address(a: str, b: str) -> bool:
    return ipaddress.ip_address(a) == ipaddress.ip_address(b)


def _no_public_address(check: str, ip: str | None) -> Result | None:
    if ip is None:
        return Result(
            check,
            "?",
            WARN,
            "could not find the outbound address (no route to the internet?)",
            "pass --ip with the public address mail leaves from",
        )
    return None


def check_ptr(settings: dict, ip: str | None, explicit: bool = False, hostname: str = "") -> Result:
    """Check forward-confirmed reverse DNS: ip → PTR ``hostname`` (default HOSTNAME) → ip."""
    if (missing := _no_public_address("ptr", ip)) is not None:
        return missing
    hostname = hostname or settings["HOSTNAME"]
    result = functools.partial(Result, "ptr", ip)
    if not explicit and not is_public(ip):
        return result(
            WARN,
            f"the outbound address {ip} is not public, so its PTR cannot be checked",
            "behind NAT? pass --ip with the public address",
        )
    set_ptr = f"ask whoever owns {ip} (your hosting provider) to set its reverse DNS (PTR) to {hostname}"
    try:
        names = dns.reverse_names(settings, ip)
    except dns.NoSuchDomain:
        names = []
    except dns.DnsError as exc:
        return result(WARN, f"could not check: {exc}", "is DNS working here? (DNS_SERVERS)")
    if not names:
        return result(FAIL, f"{ip} has no PTR record; it should be {hostname}", set_ptr)
    if not any(n.lower().rstrip(".") == hostname.lower().rstrip(".") for n in names):
        return result(FAIL, f"{ip} has PTR {', '.join(names)}; it should be {hostname}", set_ptr)
    try:
        forward = dns.addresses(settings, hostname)
    except dns.NoSuchDomain:
        forward = []
    except dns.DnsError as exc:
        return result(
            WARN,
            f"{ip} has PTR {hostname}, but could not check that {hostname} resolves back: {exc}",
            "is DNS working here? (DNS_SERVERS)",
        )
    if not any(_same_address(ip, a) for a in forward):
        return result(
            FAIL,
            f"{ip} has PTR {hostname}, but {hostname} resolves to {', '.join(forward) or 'nothing'}, not {ip}",
            f"publish an {'AAAA' if ':' in ip else 'A'} record {hostname} -> {ip}",
        )
    return result(OK, f"{ip} has PTR {hostname}, which resolves back to {ip}")


def dnsbl_name(ip: str, zone: str) -> str:
    """Return the name to look up for ``ip`` in a DNSBL zone (RFC 5782 §2.1 and §2.4)."""
    reverse = ipaddress.ip_address(ip).reverse_pointer  # 4.3.2.1.in-addr.arpa, or nibbles.ip6.arpa
    return f"{reverse.rsplit('.', 2)[0]}.{zone}"


def check_blocklists(settings: dict, ip: str | None, explicit: bool = False) -> list[Result]:
    """Look the outbound address up in each DNSBL of BLOCKLISTS."""
    if (missing := _no_public_address("blocklists", ip)) is not None:
        return [missing]
    if not explicit and not is_public(ip):
        return [
            Result(
                "blocklists", ip, OK, "private address, not checked", "pass --ip with the public address to check it"
            )
        ]
    return [_check_blocklist(settings, ip, zone) for zone in BLOCKLISTS]


def _check_blocklist(settings: dict, ip: str, zone: str) -> Result:
    result = functools.partial(Result, "blocklists", zone)
    try:
        answers = dns.ipv4_addresses(settings, dnsbl_name(ip, zone))
    except dns.NoSuchDomain:
        answers = []
    except dns.DnsError as exc:
        return result(WARN, f"could not check {zone}: {exc}", "is DNS working here? (DNS_SERVERS)")
    if not answers:
        return result(OK, f"{ip} is not listed on {zone}")
    found = [ipaddress.ip_address(a) for a in answers]
    shown = ", ".join(answers)
    if any(a in _REFUSED for a in found):
        return result(
            WARN,
            f"could not check {zone}: the resolver is refused ({shown})",
            "the list refuses queries through public resolvers (8.8.8.8, 1.1.1.1, …): "
            "use a local resolver such as unbound (DNS_SERVERS)",
        )
    if any(a in _LISTED and int(a) & 0xFF not in (0, 1, 255) for a in found):
        return result(
            FAIL,
            f"{ip} is listed on {zone} ({shown})",
            f"see why and ask for removal at {DELIST_PAGES.get(zone, zone)}",
        )
    return result(WARN, f"could not check {zone}: unexpected answer {shown}", "")

"""The hop into port 25 as the receiver saw it: the sending address's PTR and forward-confirmed
reverse DNS, the DNS blocklists, and TLS. PTR and blocklists are the doctor's own checks
(appliance/doctor/address.py), asked about the address the message came from."""

from __future__ import annotations

from .. import dns
from ..doctor import FAIL as DOCTOR_FAIL
from ..doctor import WARN as DOCTOR_WARN
from ..doctor import Result, check_blocklists, check_ptr
from .findings import FAIL, PASS, WARN, Finding

_STATUS = {DOCTOR_FAIL: FAIL, DOCTOR_WARN: WARN}


def from_doctor(result: Result, key: str, weight: int) -> Finding:
    """A doctor's Result as a finding: OK passes, WARN warns, FAIL fails; its hint is the fix."""
    return Finding(key, _STATUS.get(result.status, PASS), result.detail, result.hint, weight)


def ptr_finding(settings: dict, ip: str, helo: str) -> Finding:
    """The sending address's PTR names the host it said HELO as, and that name resolves back to it."""
    name = helo if "." in helo and not helo.startswith("[") else ""
    if not name:  # an address literal: any name of its PTR that resolves back will do
        try:
            name = next(iter(dns.reverse_names(settings, ip)), helo)
        except dns.DnsError:
            name = helo
    return from_doctor(check_ptr(settings, ip, explicit=True, hostname=name), "ptr", 15)


def blocklist_findings(settings: dict, ip: str) -> list[Finding]:
    """One finding per DNSBL the doctor knows (doctor.address.BLOCKLISTS)."""
    return [from_doctor(r, "blocklists", 30) for r in check_blocklists(settings, ip, explicit=True)]


def tls_finding(tls: str) -> Finding:
    """The session's TLS as intake recorded it (``TLSv1.3 TLS_AES_256_GCM_SHA384``; empty: none)."""
    if not tls:
        return Finding(
            "tls",
            FAIL,
            "the message came over an unencrypted connection",
            "turn on STARTTLS where the mail leaves (the appliance always offers it towards receivers)",
            10,
        )
    if tls.startswith(("TLSv1 ", "TLSv1.1", "SSL")):
        return Finding("tls", WARN, f"the hop used an old TLS version ({tls})", "allow TLS 1.2 or newer", 10)
    return Finding("tls", PASS, f"the hop was encrypted ({tls})")

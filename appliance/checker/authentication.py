"""Who the message says it is from, as a receiver checks it: SPF (pyspf), each DKIM signature
(dkimpy), DMARC alignment and policy, and the BIMI record with its DMARC prerequisite.

Every lookup goes through the appliance's resolver (appliance/dns.py): pyspf's DNS driver and
dkimpy's key lookup are handed functions over it, so DNS_SERVERS (the tests' DNS server) answers.
"""

from __future__ import annotations

import functools
import re
import threading
from dataclasses import dataclass

import dkim as dkimpy
import spf
from publicsuffixlist import PublicSuffixList

from .. import dns
from .findings import FAIL, PASS, WARN, Finding

_SPF_FIX_INCLUDE = "add the appliance's address to the SPF record of {domain} (the domain page shows the record)"
_lookups = threading.local()  # the settings of the check running on this thread, for pyspf's driver


@functools.cache
def _suffixes() -> PublicSuffixList:
    return PublicSuffixList()  # the list the package ships: no download


def organizational_domain(domain: str) -> str:
    """The registered domain of ``domain`` (RFC 7489 §3.2): shop.example.co.uk → example.co.uk."""
    domain = domain.lower().rstrip(".")
    return _suffixes().privatesuffix(domain) or domain


def aligned(a: str, b: str, strict: bool) -> bool:
    """Identifier alignment (RFC 7489 §3.1): the same name (strict), or the same organizational domain."""
    a, b = a.lower().rstrip("."), b.lower().rstrip(".")
    return a == b if strict else organizational_domain(a) == organizational_domain(b)


# -- SPF ---------------------------------------------------------------------------------------
def _spf_driver(name, qtype, strict=True, timeout=20):
    """pyspf's DNS driver (``spf.DNSLookup``) over the appliance's resolver: ((name, type), value) pairs."""
    settings = _lookups.settings
    if qtype == "SPF":  # the RR type 99 that RFC 7208 retired; nobody publishes it
        return []
    try:
        found = dns.records(settings, name, qtype)
    except dns.NoSuchDomain:
        return []
    except dns.DnsError as exc:
        raise spf.TempError(f"DNS {exc}") from None
    values = {
        "A": lambda r: r.address,
        "AAAA": lambda r: r.address,
        "MX": lambda r: (r.preference, r.exchange),
        "PTR": lambda r: r.target.to_text(True),
        "TXT": lambda r: r.strings,
        "CNAME": lambda r: r.target.to_text(True),
    }[qtype]
    return [((name, qtype), values(r)) for r in found]


spf.DNSLookup = _spf_driver


@dataclass(frozen=True)
class SpfResult:
    result: str  # pass | fail | softfail | neutral | none | permerror | temperror
    domain: str  # the domain checked: the envelope sender's, or the HELO name for a null sender
    explanation: str


def spf_result(settings: dict, ip: str, mail_from: str, helo: str) -> SpfResult:
    """SPF (RFC 7208) for the connecting address and the envelope sender (the HELO name for bounces)."""
    domain = mail_from.rpartition("@")[2] if "@" in mail_from else helo
    _lookups.settings = settings
    try:
        result, explanation = spf.check2(i=ip, s=mail_from or f"postmaster@{helo}", h=helo, querytime=10)
    finally:
        _lookups.settings = None
    return SpfResult(result, domain.lower(), explanation)


def spf_finding(found: SpfResult, ip: str) -> Finding:
    finding = functools.partial(Finding, "spf", weight=20)
    domain = found.domain
    if found.result == "pass":
        return finding(PASS, f"SPF of {domain} allows {ip}")
    if found.result == "none":
        return finding(
            FAIL,
            f"{domain} has no SPF record",
            f"publish a TXT record on {domain}: v=spf1 ip4:{ip} -all (or the one the domain page shows)",
        )
    if found.result in ("permerror", "temperror"):
        return finding(
            FAIL if found.result == "permerror" else WARN,
            f"the SPF record of {domain} could not be read ({found.result}: {found.explanation})",
            f"fix the SPF record of {domain}: one v=spf1 record, at most 10 lookups",
        )
    return finding(
        FAIL if found.result == "fail" else WARN,
        f"SPF of {domain} does not allow {ip} ({found.result})",
        _SPF_FIX_INCLUDE.format(domain=domain),
    )


# -- DKIM --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Signature:
    domain: str
    selector: str
    valid: bool
    key_found: bool


def dkim_signatures(settings: dict, data: bytes) -> list[Signature]:
    """Verify every DKIM-Signature of the message (dkimpy), with keys read through the appliance's resolver."""
    asked: dict[str, bool] = {}

    def key_lookup(name: bytes, timeout: int = 5) -> bytes | None:
        try:
            found = dns.txt_records(settings, name.decode().rstrip("."))
        except dns.DnsError:
            found = []
        asked[name.decode().rstrip(".").lower()] = bool(found)
        return found[0].encode() if found else None

    verifier = dkimpy.DKIM(data)
    count = sum(1 for name, _ in verifier.headers if name.lower() == b"dkim-signature")
    signatures = []
    for index in range(count):
        try:
            valid = bool(verifier.verify(idx=index, dnsfunc=key_lookup))
        except dkimpy.DKIMException:
            valid = False
        fields = getattr(verifier, "signature_fields", {}) or {}
        domain = fields.get(b"d", b"").decode("ascii", "replace").lower()
        selector = fields.get(b"s", b"").decode("ascii", "replace")
        signatures.append(
            Signature(domain, selector, valid, asked.get(f"{selector}._domainkey.{domain}".lower(), False))
        )
    return signatures


def dkim_findings(signatures: list[Signature], from_domain: str) -> list[Finding]:
    if not signatures:
        return [
            Finding(
                "dkim",
                FAIL,
                "the message has no DKIM signature",
                f"send through the appliance with {from_domain or 'your domain'} added and verified on the "
                "Domains page: it signs every message",
                weight=20,
            )
        ]
    findings = []
    for sig in signatures:
        name = f"{sig.selector}._domainkey.{sig.domain}"
        if sig.valid:
            findings.append(
                Finding("dkim", PASS, f"the DKIM signature of {sig.domain} (selector {sig.selector}) verifies")
            )
        elif not sig.key_found:
            findings.append(
                Finding(
                    "dkim",
                    FAIL,
                    f"the DKIM signature of {sig.domain} names the key {name}, which is not in DNS",
                    f"publish the TXT record {name} that the domain page shows",
                    weight=20,
                )
            )
        else:
            findings.append(
                Finding(
                    "dkim",
                    FAIL,
                    f"the DKIM signature of {sig.domain} (selector {sig.selector}) does not verify",
                    f"the key in {name} is not the one the message was signed with, or the message was changed "
                    "after signing: publish the record exactly as the domain page shows it",
                    weight=20,
                )
            )
    return findings


# -- DMARC -------------------------------------------------------------------------------------
_TAG = re.compile(r"\s*([a-z]+)\s*=\s*([^;]*)", re.I)


def tags(record: str) -> dict[str, str]:
    """The tags of a DMARC or BIMI record (``v=DMARC1; p=reject``), names lower-cased."""
    return {m.group(1).lower(): m.group(2).strip() for part in record.split(";") if (m := _TAG.match(part))}


@dataclass(frozen=True)
class DmarcRecord:
    domain: str  # where it was found: the From: domain or its organizational domain
    tags: dict[str, str]

    def policy(self, from_domain: str) -> str:
        """The policy that applies to ``from_domain``: sp= for a subdomain found at the organizational domain."""
        if from_domain.lower() != self.domain and "sp" in self.tags:
            return self.tags["sp"].lower()
        return self.tags.get("p", "").lower()


def _record(settings: dict, name: str, version: str) -> str | None:
    try:
        found = dns.txt_records(settings, name)
    except dns.NoSuchDomain:
        return None
    wanted = [r for r in found if r.replace(" ", "").lower().startswith(f"v={version.lower()}")]
    return wanted[0] if len(wanted) == 1 else None


def dmarc_record(settings: dict, from_domain: str) -> DmarcRecord | None:
    """The DMARC record of the From: domain, else of its organizational domain (RFC 7489 §6.6.3)."""
    for domain in dict.fromkeys((from_domain.lower(), organizational_domain(from_domain))):
        record = _record(settings, f"_dmarc.{domain}", "DMARC1")
        if record is not None:
            return DmarcRecord(domain, tags(record))
    return None


def dmarc_findings(
    record: DmarcRecord | None, from_domain: str, found_spf: SpfResult, signatures: list[Signature]
) -> list[Finding]:
    if not from_domain:
        return [Finding("dmarc", FAIL, "the From: header has no address", "give the message a From: address", 20)]
    if record is None:
        return [
            Finding(
                "dmarc",
                FAIL,
                f"{from_domain} has no DMARC record",
                f"publish a TXT record _dmarc.{organizational_domain(from_domain)}: v=DMARC1; p=none to start, "
                "then p=quarantine once your mail passes",
                weight=20,
            )
        ]
    strict_spf = record.tags.get("aspf", "r").lower() == "s"
    strict_dkim = record.tags.get("adkim", "r").lower() == "s"
    spf_aligned = found_spf.result == "pass" and aligned(found_spf.domain, from_domain, strict_spf)
    dkim_aligned = any(s.valid and aligned(s.domain, from_domain, strict_dkim) for s in signatures)
    findings = []
    if spf_aligned or dkim_aligned:
        how = " and ".join(n for n, ok in (("DKIM", dkim_aligned), ("SPF", spf_aligned)) if ok)
        findings.append(Finding("dmarc", PASS, f"DMARC passes for {from_domain}: {how} aligned with the From: domain"))
    else:
        findings.append(
            Finding(
                "dmarc",
                FAIL,
                f"DMARC fails for {from_domain}: neither a valid DKIM signature nor a passing SPF domain matches "
                "the From: domain",
                f"sign with {from_domain}'s DKIM key (send through the appliance with the domain verified), or "
                f"send with an envelope sender at {from_domain} that SPF allows",
                weight=20,
            )
        )
    policy = record.policy(from_domain)
    if policy in ("quarantine", "reject"):
        findings.append(Finding("dmarc-policy", PASS, f"the DMARC policy of {record.domain} is p={policy}"))
    else:
        findings.append(
            Finding(
                "dmarc-policy",
                WARN,
                f"the DMARC policy of {record.domain} is p={policy or '(none given)'}: receivers are not asked to "
                "refuse mail that fails",
                "once the DMARC reports show all your mail passing, change p=none to p=quarantine, later p=reject",
                weight=6,
            )
        )
    return findings


# -- BIMI --------------------------------------------------------------------------------------
def bimi_finding(settings: dict, from_domain: str, record: DmarcRecord | None) -> Finding:
    """The BIMI record (default._bimi.DOMAIN) and its prerequisite: DMARC at quarantine or reject."""
    finding = functools.partial(Finding, "bimi", weight=3)
    try:
        found = next(
            (
                (domain, value)
                for domain in dict.fromkeys((from_domain.lower(), organizational_domain(from_domain)))
                if (value := _record(settings, f"default._bimi.{domain}", "BIMI1")) is not None
            ),
            None,
        )
    except dns.DnsError as exc:
        return finding(WARN, f"could not look up the BIMI record: {exc}", "is DNS working here? (DNS_SERVERS)")
    policy = record.policy(from_domain) if record else ""
    pct = record.tags.get("pct", "100") if record else "100"
    if found is None:
        return finding(
            WARN,
            f"{from_domain} has no BIMI record (optional: it shows your logo beside your mail at Gmail, Yahoo, Apple)",
            f"publish default._bimi.{from_domain} TXT v=BIMI1; l=https://{from_domain}/logo.svg (an SVG Tiny PS "
            "logo); DMARC must be at p=quarantine or p=reject first",
        )
    domain, value = found
    logo = tags(value).get("l", "")
    if policy not in ("quarantine", "reject") or pct != "100":
        return finding(
            FAIL,
            f"{domain} has a BIMI record, but receivers ignore it: DMARC is p={policy or 'missing'}"
            + (f" pct={pct}" if pct != "100" else ""),
            "BIMI needs DMARC at p=quarantine or p=reject for all mail (pct=100): raise the DMARC policy",
        )
    if not logo.lower().startswith("https://"):
        return finding(
            FAIL,
            f"the BIMI record of {domain} has no https logo (l={logo or 'missing'})",
            "set l= to the https address of your SVG Tiny PS logo",
        )
    return finding(PASS, f"{domain} has a BIMI record (logo {logo}) and DMARC p={policy}")

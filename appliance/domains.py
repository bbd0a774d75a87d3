"""Sending domains: DKIM keys, the DNS records to publish, and checks of each record in plain words.

A domain is verified when its RSA DKIM record publishes our key. Checks look records up through
appliance.dns (blocking): they run on the CLI, the dashboard's check thread and the periodic Checker
thread, never on the SMTP loop.
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import json
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from . import alerts, audit, clock, dkim, dmarc, dns
from .db import database
from .models import Domain
from .policy import acceptance
from .returnpath import BOUNCE_LABEL

log = logging.getLogger(__name__)

PASS, FAIL, ERROR = "pass", "fail", "error"  # ERROR: the lookup itself failed (try again later)
SPF_MAX_LOOKUPS = 10  # RFC 7208 §4.6.4


class DomainError(ValueError):
    """Input for a domain that cannot be used (shown to the admin as is)."""


@dataclass(frozen=True)
class Record:
    key: str  # stable id: dkim, dkim-ed25519, spf, dmarc, bounce-mx, bounce-spf, dkim-next, …
    label: str
    type: str  # TXT | MX
    name: str
    value: str
    note: str = ""

    @property
    def strings(self) -> list[str]:
        """The TXT value as DNS character-strings of at most 255 bytes."""
        return dkim.txt_strings(self.value) if self.type == "TXT" else [self.value]

    @property
    def zone(self) -> str:
        """The record as a zone-file line."""
        shown = dkim.zone_value(self.value) if self.type == "TXT" else self.value
        return f"{self.name}. 3600 IN {self.type} {shown}"


@dataclass
class Result:
    status: str  # pass | fail | error
    error: str = ""  # what is wrong, in plain words ("" when it passes)


def hostname_problem(hostname: str) -> str | None:
    """Why records that name ``hostname`` cannot work: it is a name only this machine knows (no dot,
    localhost, a loopback address). The SPF and bounce MX records name HOSTNAME."""
    name = hostname.strip("[]").lower().rstrip(".")
    try:
        local = ipaddress.ip_address(name).is_loopback
    except ValueError:
        local = name == "localhost" or name.endswith(".localhost") or "." not in name
    if not local:
        return None
    return (
        f"HOSTNAME is {hostname!r}, a name only this machine knows: the SPF and bounce MX records name it "
        "and cannot work until HOSTNAME is this machine's public name (set APPLIANCE_HOSTNAME)"
    )


def normalize(name: str) -> str:
    """Lower-case a domain name and drop a trailing dot; raise DomainError when it is not one."""
    name = name.strip().lower().rstrip(".")
    problem = acceptance.address_problem(f"postmaster@{name}")
    if not name or problem:
        raise DomainError(f"{name!r} is not a domain name")
    return name


def records(domain: Domain, hostname: str) -> list[Record]:
    """Return the DNS records to publish for ``domain`` (a rotation's new keys included)."""
    d = domain.name
    bounce = f"{BOUNCE_LABEL}.{d}"
    found = [
        Record(
            "dkim",
            "DKIM (RSA-2048)",
            "TXT",
            f"{dkim.rsa_selector(domain.selector)}._domainkey.{d}",
            dkim.rsa_record(domain.rsa_key),
        ),
        Record(
            "dkim-ed25519",
            "DKIM (Ed25519)",
            "TXT",
            f"{dkim.ed25519_selector(domain.selector)}._domainkey.{d}",
            dkim.ed25519_record(domain.ed25519_key),
            "A second signature for receivers that check Ed25519 (RFC 8463).",
        ),
    ]
    if domain.next_selector:
        found += [
            Record(
                "dkim-next",
                "DKIM (RSA-2048), new key",
                "TXT",
                f"{dkim.rsa_selector(domain.next_selector)}._domainkey.{d}",
                dkim.rsa_record(domain.next_rsa_key),
                "Publish it next to the current one; signing switches once it is found.",
            ),
            Record(
                "dkim-ed25519-next",
                "DKIM (Ed25519), new key",
                "TXT",
                f"{dkim.ed25519_selector(domain.next_selector)}._domainkey.{d}",
                dkim.ed25519_record(domain.next_ed25519_key),
            ),
        ]
    found += [
        Record(
            "spf",
            "SPF",
            "TXT",
            d,
            f"v=spf1 a:{hostname} ~all",
            f"If {d} already has an SPF record, add a:{hostname} to it: a domain must have only one.",
        ),
        Record(
            "dmarc",
            "DMARC",
            "TXT",
            f"_dmarc.{d}",
            f"v=DMARC1; p=quarantine; adkim=r; aspf=r; rua=mailto:{dmarc.address(hostname)}",
            "A suggestion: start with p=quarantine, then p=reject once the reports look right. rua= sends "
            "the mailbox providers' daily reports to this appliance: its DMARC page shows who sends as "
            f"{d}. Keep any rua= address you already have beside it, separated by a comma.",
        ),
    ]
    if hostname.lower() != d and not hostname.lower().endswith(f".{d}"):  # the reports go to another domain
        found.append(
            Record(
                "dmarc-report",
                "DMARC report authorization",
                "TXT",
                f"{d}._report._dmarc.{hostname}",
                "v=DMARC1",
                f"In the zone of {hostname}, not of {d}: it allows receivers to send {d}'s reports to an "
                f"address at {hostname}, which they otherwise drop (RFC 7489 §7.1).",
            )
        )
    found += [
        Record(
            "bounce-mx",
            "Bounce MX",
            "MX",
            bounce,
            f"10 {hostname}.",
            "Once it is found, mail leaves with a return path here, so later bounces and spam "
            "complaints come back to this appliance, which bounces or suppresses the recipient.",
        ),
        Record("bounce-spf", "Bounce SPF", "TXT", bounce, f"v=spf1 a:{hostname} -all"),
    ]
    return found


# -- checks ------------------------------------------------------------------------------------
def _txt(settings: dict, name: str) -> list[str]:
    try:
        return dns.txt_records(settings, name)
    except dns.NoSuchDomain:
        return []


def check_dkim(settings: dict, name: str, expected_record: str) -> Result:
    """Compare the DKIM key record at ``name`` with the one we generated."""
    found = _txt(settings, name)
    if not found:
        return Result(FAIL, f"missing: there is no TXT record at {name}")
    expected = dkim.tags(expected_record)
    keys = [dkim.tags(value) for value in found]
    if any(k.get("p") == expected["p"] for k in keys):
        return Result(PASS)
    if any("p" in k and not k["p"] for k in keys):
        return Result(FAIL, f"revoked: the record at {name} has an empty p= (RFC 6376 §3.6.1)")
    if any("p" in k for k in keys):
        return Result(FAIL, f"wrong key: the record at {name} publishes another public key than ours")
    return Result(FAIL, f"not a DKIM key: the TXT record at {name} has no p= tag")


@dataclass
class SpfWalk:
    lookups: int = 0
    plus_all: bool = False
    hosts: set[str] = field(default_factory=set)  # a:/mx hosts whose addresses are authorized
    mx_domains: set[str] = field(default_factory=set)
    networks: list = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _spf_records(values: list[str]) -> list[str]:
    return [v for v in values if v.lower() == "v=spf1" or v.lower().startswith("v=spf1 ")]


def _walk_spf(settings: dict, record: str, domain: str, walk: SpfWalk, depth: int = 0) -> None:
    """Follow an SPF record's terms (include/redirect recursively), counting DNS lookups."""
    for term in record.split()[1:]:
        qualifier = term[0] if term[0] in "+-~?" else "+"
        term = term.lstrip("+-~?")
        if term.lower().startswith(("redirect=", "exp=")):
            mech, arg = term.split("=", 1)
        else:
            mech, _, arg = term.partition(":")
        mech = mech.lower().split("/")[0]
        arg = arg.split("/")[0].lower().rstrip(".")
        if mech in ("include", "a", "mx", "ptr", "exists", "redirect"):
            walk.lookups += 1
        if mech == "all" and qualifier == "+":
            walk.plus_all = True
        if qualifier != "+" and mech not in ("include", "redirect"):
            continue
        if mech == "ip4" or mech == "ip6":
            try:
                walk.networks.append(ipaddress.ip_network(term.split(":", 1)[1], strict=False))
            except ValueError:
                walk.problems.append(f"{term} is not an IP network")
        elif mech == "a":
            walk.hosts.add(arg or domain)
        elif mech == "mx":
            walk.mx_domains.add(arg or domain)
        elif mech in ("include", "redirect") and arg:
            if depth >= SPF_MAX_LOOKUPS:
                walk.problems.append("includes nest too deep")
                continue
            nested = _spf_records(_txt(settings, arg))
            if len(nested) != 1:
                walk.problems.append(f"{mech}:{arg} has {len(nested) or 'no'} SPF record(s)")
                continue
            _walk_spf(settings, nested[0], arg, walk, depth + 1)


def _authorizes(settings: dict, walk: SpfWalk, hostname: str) -> bool:
    if hostname in walk.hosts:
        return True
    mx_hosts = set()
    for mx_domain in walk.mx_domains:
        try:
            mx_hosts.update(host.lower() for _, host in dns.mx_records(settings, mx_domain, cached=False))
        except dns.DnsError:
            continue
    if hostname in mx_hosts:
        return True
    try:
        ours = [ipaddress.ip_address(a) for a in dns.addresses(settings, hostname)]
    except dns.DnsError:
        return False
    return any(ip in net for ip in ours for net in walk.networks if ip.version == net.version)


def check_spf(settings: dict, name: str, hostname: str) -> Result:
    """Check that ``name`` has one SPF record, within 10 lookups, that authorizes the appliance."""
    found = _spf_records(_txt(settings, name))
    if not found:
        return Result(FAIL, f"missing: there is no SPF record (v=spf1) at {name}")
    if len(found) > 1:
        return Result(
            FAIL,
            f"several SPF records ({len(found)}) at {name}: receivers treat that as an "
            "error (RFC 7208 §4.5); merge them into one",
        )
    walk = SpfWalk()
    _walk_spf(settings, found[0], name, walk)
    if walk.lookups > SPF_MAX_LOOKUPS:
        return Result(
            FAIL,
            f"SPF with more than 10 lookups: {walk.lookups} DNS lookups, and receivers stop at 10 (RFC 7208 §4.6.4)",
        )
    if walk.plus_all:
        return Result(FAIL, "+all authorizes every server on the internet: use ~all or -all")
    if walk.problems:
        return Result(FAIL, "; ".join(walk.problems))
    if not _authorizes(settings, walk, hostname):
        current = found[0]
        head, _, tail = current.rpartition(" ")
        merged = f"{head} a:{hostname} {tail}" if tail.lstrip("+-~?").lower() == "all" else f"{current} a:{hostname}"
        return Result(FAIL, f"does not authorize this appliance ({hostname}): publish {merged}")
    return Result(PASS)


def check_dmarc(settings: dict, name: str) -> Result:
    found = [v for v in _txt(settings, name) if v.replace(" ", "").upper().startswith("V=DMARC1")]
    if not found:
        return Result(FAIL, f"missing: there is no DMARC record (v=DMARC1) at {name}")
    if len(found) > 1:
        return Result(FAIL, f"several DMARC records ({len(found)}) at {name}: receivers ignore them all")
    policy_tag = dkim.tags(found[0]).get("p", "").lower()
    if policy_tag not in ("none", "quarantine", "reject"):
        return Result(FAIL, "no valid p= policy (none, quarantine or reject)")
    if policy_tag == "none":
        return Result(
            FAIL,
            "DMARC policy none: receivers take no action on forged mail; "
            "use p=quarantine (or p=reject) once the reports look right",
        )
    return Result(PASS)


def check_dmarc_report(settings: dict, name: str) -> Result:
    """RFC 7489 §7.1: the report address's domain says it takes the reports of another domain."""
    if any(v.replace(" ", "").upper().startswith("V=DMARC1") for v in _txt(settings, name)):
        return Result(PASS)
    return Result(FAIL, f"missing: there is no v=DMARC1 record at {name}, so receivers drop the reports")


def check_mx(settings: dict, name: str, hostname: str) -> Result:
    try:
        hosts = [host.lower() for _, host in dns.mx_records(settings, name, cached=False)]
    except dns.NoSuchDomain:
        hosts = []
    if not hosts:
        return Result(FAIL, f"missing: there is no MX record at {name}")
    if hostname not in hosts:
        return Result(FAIL, f"points at {', '.join(hosts)} instead of {hostname}")
    return Result(PASS)


def _check_one(settings: dict, record: Record, hostname: str) -> Result:
    try:
        if record.key.startswith("dkim"):
            return check_dkim(settings, record.name, record.value)
        if record.key in ("spf", "bounce-spf"):
            return check_spf(settings, record.name, hostname)
        if record.key == "dmarc":
            return check_dmarc(settings, record.name)
        if record.key == "dmarc-report":
            return check_dmarc_report(settings, record.name)
        return check_mx(settings, record.name, hostname)
    except dns.DnsError as exc:
        return Result(ERROR, f"could not check: {exc}")


def check(domain: Domain, settings: dict) -> dict[str, Result]:
    """Look every record up, store each result, update `verified`, promote a rotation whose key is
    published, and raise an alert for each record that broke since the last check."""
    hostname = settings["HOSTNAME"].lower()
    wanted = records(domain, hostname)
    results = {r.key: _check_one(settings, r, hostname) for r in wanted}
    labels = {r.key: f"{r.label} ({r.type} {r.name})" for r in wanted}
    before = domain.statuses()
    was_verified = domain.verified
    if domain.next_selector and results["dkim-next"].status == PASS:
        # The new key is published: sign with it from now on (the old records may go later).
        domain.selector, domain.rsa_key, domain.ed25519_key = (
            domain.next_selector,
            domain.next_rsa_key,
            domain.next_ed25519_key,
        )
        domain.next_selector, domain.next_rsa_key, domain.next_ed25519_key = None, "", ""
        results["dkim"], results["dkim-ed25519"] = results.pop("dkim-next"), results.pop("dkim-ed25519-next")
        before = {}
    if results["dkim"].status != ERROR:
        domain.verified = results["dkim"].status == PASS
    domain.record_status = json.dumps({k: {"status": r.status, "error": r.error} for k, r in results.items()})
    domain.last_checked_at = clock.now()
    domain.save()
    subject = f"domain {domain.name}"
    for key, result in results.items():
        if result.status == FAIL and before.get(key, {}).get("status") == PASS:
            alerts.raise_alert(settings, alerts.DNS_RECORD_BROKEN, subject, f"{labels[key]}: {result.error}")
    if was_verified and not domain.verified:
        alerts.raise_alert(
            settings,
            alerts.DOMAIN_UNVERIFIED,
            subject,
            f"the DKIM record no longer matches ({results['dkim'].error}); mail from "
            f"{domain.name} is refused until it is published again",
            severity=alerts.CRITICAL,
        )
    return results


def describe(d: Domain, hostname: str) -> dict[str, Any]:
    """A domain as `appliance domains show --json` and the API show it: its records to publish, each
    with its last check (times as datetimes, for each edge to write)."""
    status = d.statuses()
    return {
        "id": d.id,
        "name": d.name,
        "warning": hostname_problem(hostname) or "",
        "verified": d.verified,
        "selector": d.selector,
        "next_selector": d.next_selector,
        "created_at": d.created_at,
        "last_checked_at": d.last_checked_at,
        "records": [
            {
                "key": r.key,
                "label": r.label,
                "type": r.type,
                "name": r.name,
                "value": r.value,
                "strings": r.strings,
                "note": r.note,
                "status": status.get(r.key, {}).get("status", "unchecked"),
                "error": status.get(r.key, {}).get("error", ""),
            }
            for r in records(d, hostname)
        ],
    }


# -- admin actions -----------------------------------------------------------------------------
def find(name: str) -> Domain | None:
    """Find a domain by name (any case, trailing dot allowed) or by id."""
    name = name.strip()
    if name.isdigit():
        return Domain.get_or_none(Domain.id == int(name))
    return Domain.get_or_none(Domain.name == name.lower().rstrip("."))


def add(name: str) -> Domain:
    """Add a sending domain with fresh DKIM keys (unverified until its DKIM record is found)."""
    name = normalize(name)
    if find(name):
        raise DomainError(f"{name} is already a sending domain")
    keys = dkim.generate(dkim.new_selector(clock.now().strftime("%Y%m")))
    domain = Domain.create(name=name, selector=keys.selector, rsa_key=keys.rsa_pem, ed25519_key=keys.ed25519_seed)
    audit.record("domain.add", f"domain {domain.name}", f"DKIM selector {domain.selector}")
    return domain


def rotate(domain: Domain) -> Domain:
    """Generate new keys under a new selector; they replace the current ones once published."""
    keys = dkim.generate(dkim.new_selector(clock.now().strftime("%Y%m")))
    domain.next_selector, domain.next_rsa_key, domain.next_ed25519_key = keys.selector, keys.rsa_pem, keys.ed25519_seed
    domain.save()
    audit.record("domain.rotate_keys", f"domain {domain.name}", f"new DKIM selector {domain.next_selector}")
    return domain


# -- running inside `serve` ---------------------------------------------------------------------
class Checker:
    """Re-check every domain each DOMAIN_CHECK_INTERVAL seconds (a thread started by `serve`);
    also runs the checks the dashboard asks for, off the request thread."""

    def __init__(self, settings: dict):
        self.settings = settings
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(self.settings["DOMAIN_CHECK_INTERVAL"]):
            try:
                check_all(self.settings)
            except Exception:  # the next round tries again; a crash here would stop all checks
                log.exception("periodic domain check failed")


def check_all(settings: dict) -> int:
    """Check every domain once (on the calling thread, with its own connection); return how many."""
    with database.connection_context():
        domains = list(Domain.select().order_by(Domain.name))
        for domain in domains:
            check(domain, settings)
    return len(domains)


_running: dict[int, concurrent.futures.Future] = {}


def check_in_background(domain_id: int, settings: dict) -> concurrent.futures.Future:
    """Check one domain on a thread of its own (the dashboard's "Check DNS" does not wait for DNS);
    a check already running for this domain is the one returned. Each domain has its own thread, so
    one whose lookups wait for a resolver that does not answer (DNS_TIMEOUT each) holds up no other's."""
    future = _running.get(domain_id)
    if future is not None and not future.done():
        return future
    future = _running[domain_id] = concurrent.futures.Future()

    def run() -> None:
        try:
            with database.connection_context():
                domain = Domain.get_or_none(Domain.id == domain_id)
                future.set_result(check(domain, settings) if domain is not None else {})
        except Exception as exc:  # the page shows the last stored results; the log says why there are no new ones
            log.exception("DNS check of domain %s failed", domain_id)
            future.set_exception(exc)

    threading.Thread(target=run, name=f"dns-check-{domain_id}", daemon=True).start()
    return future


def forget_checks() -> None:
    """Forget the checks started so far (a new database's domain 1 is not the one being checked)."""
    _running.clear()


def checking(domain_id: int) -> bool:
    """Tell whether a background check of this domain is still running."""
    future = _running.get(domain_id)
    return future is not None and not future.done()

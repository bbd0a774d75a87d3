"""The deliverability checker: a check address ``check-<token>@HOSTNAME`` takes one message on port
25, and the message is graded as a receiver would see it (docs/checker.md).

The token is a random id with its signature (appliance/tracking.py, kind CHECK): it names no
database row, and the same token opens the result page without a login. The first message that
arrives is graded while its sender waits for the reply to DATA (as a receiver's filters do), and
the grade is stored with the message in one transaction; a check address then takes no more mail.
One unused for EXPIRES expires.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

from .. import audit, clock, db, message_bytes, replies, tracking
from ..doctor import check_blocklists, check_ptr, outbound_ip
from ..models import CheckAddress
from ..policy import acceptance
from . import authentication, content, hop, spam
from .findings import FAIL, PASS, WARN, Finding, grade, ordered

log = logging.getLogger(__name__)

LOCAL_PREFIX = "check-"  # check-<token>@HOSTNAME
EXPIRES = dt.timedelta(hours=24)  # an unused check address takes no mail after this
DNS_TIMEOUT = 2.0  # seconds per lookup while grading (the sender waits), whatever DNS_TIMEOUT delivery may take

__all__ = ["FAIL", "PASS", "WARN", "CheckError", "Facts", "Finding", "Report", "grade_message", "new", "recent", "show"]


class CheckError(Exception):
    """A token that is not one of ours, or a check that cannot be shown; the message says which."""


@dataclass(frozen=True)
class Facts:
    """What the receiver knows of one arrival: the bytes as received, and the session they came in."""

    data: bytes
    mail_from: str
    client_ip: str
    helo: str
    tls: str


@dataclass(frozen=True)
class Report:
    grade: str
    findings: list[Finding]  # the most important fix first


def address(settings: dict, tracking_id: str) -> str:
    return f"{LOCAL_PREFIX}{tracking.token(settings, tracking.CHECK, tracking_id)}@{settings['HOSTNAME']}"


def result_url(settings: dict, token: str) -> str:
    """The signed link of the result page (no login): under TRACKING_URL, as the other public links."""
    return f"{tracking.base_url(settings)}/check/{token}"


def token_of(settings: dict, rcpt: str) -> str | None:
    """The token of a check address of ours (``check-TOKEN@HOSTNAME``), or None when ``rcpt`` is not one;
    whether the token is good is ``verify``'s to say."""
    local, _, domain = rcpt.rpartition("@")
    if not local.lower().startswith(LOCAL_PREFIX) or domain.lower().rstrip(".") != settings["HOSTNAME"].lower():
        return None
    return local[len(LOCAL_PREFIX) :]


def _find(settings: dict, token: str) -> CheckAddress | None:
    value = token.strip()
    if "@" in value:  # the whole address will do
        value = token_of(settings, value) or ""
    tracking_id = tracking.verify(settings, tracking.CHECK, value)
    if tracking_id is None:
        return None
    return CheckAddress.get_or_none(CheckAddress.tracking_id == tracking_id)


def new(settings: dict) -> tuple[str, str]:
    """Make a check address; return (address, token)."""
    tracking_id = tracking.new_id()
    now = clock.now()
    made = address(settings, tracking_id)

    def create() -> None:
        CheckAddress.create(tracking_id=tracking_id, created_at=now, expires_at=now + EXPIRES)
        audit.record("check.new", f"check address {made}")

    db.write(create).result()
    return made, tracking.token(settings, tracking.CHECK, tracking_id)


def refusal(settings: dict, token: str) -> tuple[str | None, int | None]:
    """At RCPT TO: (None, the check's id) when the address takes a message, else (the reply, None)."""
    row = _find(settings, token)
    if row is None:
        return replies.CHECK_UNKNOWN, None
    if row.message_id is not None:
        return replies.CHECK_USED, None
    if row.expires_at <= clock.now():
        return replies.CHECK_EXPIRED, None
    return None, row.id


def show(settings: dict, token: str) -> dict:
    """A check's state and, once graded, its grade and findings (what `check show --json` prints)."""
    row = _find(settings, token)
    if row is None:
        raise CheckError("no such check address (a token from `appliance check new` or the Test my setup page)")
    return _shown(settings, row)


def recent(settings: dict, limit: int = 10) -> list[dict]:
    """The newest check addresses, as ``show`` gives them (the Test my setup page lists them)."""
    rows = CheckAddress.select().order_by(CheckAddress.created_at.desc(), CheckAddress.id.desc()).limit(limit)
    return [_shown(settings, row) for row in rows]


def _shown(settings: dict, row: CheckAddress) -> dict:
    token = tracking.token(settings, tracking.CHECK, row.tracking_id)
    graded = row.message_id is not None
    status = "graded" if graded else "expired" if row.expires_at <= clock.now() else "waiting"
    return {
        "address": address(settings, row.tracking_id),
        "token": token,
        "url": result_url(settings, token),
        "status": status,
        "created_at": row.created_at,
        "expires_at": row.expires_at,
        "received_at": row.received_at,
        "message_id": row.message_id,
        "mail_from": row.mail_from,
        "client_ip": row.client_ip,
        "grade": row.grade or None,
        "findings": json.loads(row.findings) if row.findings else [],
    }


# -- grading -----------------------------------------------------------------------------------
def _safely(key: str, check: Callable[[], Finding | list[Finding]]) -> list[Finding]:
    """Run one check; a lookup that failed or a bug in it is a warning, never a lost grade."""
    try:
        found = check()
    except Exception as exc:  # noqa: BLE001 — whatever the message or DNS holds, the other checks still run
        log.warning("checker: the %s check failed", key, exc_info=True)
        return [Finding(key, WARN, f"could not check ({type(exc).__name__}: {exc})", "", 3)]
    return found if isinstance(found, list) else [found]


def _value(compute: Callable, default=None):
    """What ``compute`` gives, or the exception it raised (for the checks that use it to report)."""
    try:
        return compute()
    except Exception as exc:  # noqa: BLE001 — a lookup that failed is each dependent check's warning
        return exc if default is None else default


def _raised(value):
    if isinstance(value, Exception):
        raise value
    return value


def grade_message(settings: dict, facts: Facts) -> Report:
    """Grade a message as its receiver sees it; never raises on bad input."""
    settings = {**settings, "DNS_TIMEOUT": min(float(settings["DNS_TIMEOUT"]), DNS_TIMEOUT)}
    data = message_bytes.normalise_line_endings(facts.data)
    message = email.message_from_bytes(data, policy=email.policy.compat32)
    from_addresses = acceptance.header_addresses(message.get("From") or "")
    from_domain = acceptance.split_address(from_addresses[0])[1].lower() if from_addresses else ""
    subject = message_bytes.decode_words(message.get("Subject") or "")
    body = content.Body(message)
    ip = facts.client_ip

    found_spf = authentication.spf_result(settings, ip, facts.mail_from, facts.helo)  # pyspf never raises
    signatures = _value(lambda: authentication.dkim_signatures(settings, data), [])
    dmarc = _value(lambda: authentication.dmarc_record(settings, from_domain) if from_domain else None)
    findings = [
        *_safely("spf", lambda: authentication.spf_finding(found_spf, ip)),
        *_safely("dkim", lambda: authentication.dkim_findings(signatures, from_domain)),
        *_safely("dmarc", lambda: authentication.dmarc_findings(_raised(dmarc), from_domain, found_spf, signatures)),
        *_safely("bimi", lambda: authentication.bimi_finding(settings, from_domain, _raised(dmarc))),
        *_safely("ptr", lambda: hop.ptr_finding(settings, ip, facts.helo)),
        *_safely("blocklists", lambda: hop.blocklist_findings(settings, ip)),
        *_safely("tls", lambda: hop.tls_finding(facts.tls)),
        *_safely("spamassassin", lambda: spam.spam_finding(settings, data)),
        *_safely("list-unsubscribe", lambda: content.unsubscribe_finding(message, body)),
        *_safely("message-id", lambda: content.message_id_finding(message)),
        *_safely("date", lambda: content.date_finding(message, clock.now())),
        *_safely("text-part", lambda: content.text_part_finding(body)),
        *_safely("images", lambda: content.images_finding(body)),
        *_safely("links", lambda: content.links_finding(body, from_domain)),
        *_safely("subject", lambda: content.subject_finding(subject)),
    ]
    return Report(grade(findings), ordered(findings))


def graded(settings: dict, facts: Facts) -> Report:
    """grade_message, and a report of one warning if grading itself broke (the message is still stored)."""
    try:
        return grade_message(settings, facts)
    except Exception as exc:  # noqa: BLE001 — an arrival is never refused for a fault of the checker's
        log.exception("checker: could not grade a message")
        finding = Finding("checker", WARN, f"the message could not be graded ({type(exc).__name__})", "", 0)
        return Report("", [finding])


def domain_findings(settings: dict, domain: str) -> list[Finding]:
    """What the domain page adds to the records: the BIMI record of ``domain``, and the PTR and the
    blocklists of the address mail leaves from (the doctor's checks, as `appliance doctor` runs them
    without --ip), each lookup bounded by DNS_TIMEOUT here."""
    settings = {**settings, "DNS_TIMEOUT": min(float(settings["DNS_TIMEOUT"]), DNS_TIMEOUT)}
    ip = outbound_ip()
    dmarc = _value(lambda: authentication.dmarc_record(settings, domain))
    return [
        *_safely("bimi", lambda: authentication.bimi_finding(settings, domain, _raised(dmarc))),
        *_safely("ptr", lambda: hop.from_doctor(check_ptr(settings, ip), "ptr", 15)),
        *_safely("blocklists", lambda: [hop.from_doctor(r, "blocklists", 30) for r in check_blocklists(settings, ip)]),
    ]


def storing(check_id: int, facts: Facts, report: Report, store: db.Many) -> db.Many:
    """A store function for mail to a check address: ``store`` (of its kind), then the grade on the
    check's row, in the same transaction; only the first message to arrive is linked."""

    def store_and_grade(items):
        ids = store(items)
        findings = json.dumps([f.as_dict() for f in report.findings])
        CheckAddress.update(
            message_id=ids[0],
            received_at=clock.now(),
            mail_from=facts.mail_from[:255],
            client_ip=facts.client_ip,
            grade=report.grade,
            findings=findings,
        ).where(CheckAddress.id == check_id, CheckAddress.message_id.is_null()).execute()
        return ids

    return store_and_grade

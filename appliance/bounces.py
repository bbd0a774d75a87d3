"""Bounces that come back later, and complaints: the return path and what arrives at it.

Once a sending domain's bounce MX (`bounces.<domain>`, a record the domain page asks for) points at
the appliance, its mail leaves with the return path `bounce+<message id>-<signature>@bounces.<domain>`
(VERP), which also aligns SPF with the From: domain for DMARC. The remote servers' later bounces
(RFC 3464 delivery status notifications) and the mailbox providers' feedback-loop complaints (RFC 5965
ARF reports) then arrive on port 25 at that address. The signature (an HMAC of the message id with
the secret key) proves the address is ours; nothing else is accepted there.

What a report says is applied to the message it names: a failed recipient's delivery becomes
`bounced` (even when it had been delivered), the attempt shows in its timeline, a hard bounce puts
the address on the suppression list, and the envelope sender gets the appliance's own DSN, as for a
bounce during the session; a complaint suppresses the address with source `complaint`, which the
reputation guard counts. The report itself is stored like any inbound mail, in the same
transaction as what it changes, before the 250.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import logging
import re
from dataclasses import dataclass, field
from email.message import Message as EmailMessage

from . import clock, db, events, intake, suppressions
from .delivery import dsn
from .delivery.record import queue_dsn, sent_messages
from .delivery.replies import Reply
from .models import BOUNCED, Attempt, Delivery, refresh_messages

log = logging.getLogger(__name__)

_DIAGNOSTIC = re.compile(r"(?:smtp;\s*)?([245]\d\d)\b[\s-]*(.*)", re.I | re.S)


@dataclass
class Report:
    kind: str  # "bounce" | "complaint" | "" (anything else: an auto-reply, a delay notice, junk)
    reporter: str = ""
    failed: list[tuple[str, Reply]] = field(default_factory=list)  # bounce: (recipient, reply)
    complained: list[str] = field(default_factory=list)  # complaint: the recipients, when it names them


def read(data: bytes) -> Report:
    """Read a delivery status notification or a feedback report; never raises on bad input."""
    try:
        message = email.message_from_bytes(data, policy=email.policy.compat32)
        if message.get_content_type() != "multipart/report":
            return Report("")
        report_type = (message.get_param("report-type") or "").lower()
        parts = message.get_payload() if message.is_multipart() else []
        if report_type == "delivery-status":
            return _read_dsn(parts)
        if report_type == "feedback-report":
            return _read_arf(parts)
    except Exception:  # noqa: BLE001 — whatever a remote sends, it is stored and left alone
        log.warning("could not read a report", exc_info=True)
    return Report("")


def _blocks(part: EmailMessage) -> list[EmailMessage]:
    """The header blocks of a message/delivery-status or message/feedback-report part."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return payload
    text = payload if isinstance(payload, str) else ""
    return [email.message_from_string(block.strip() + "\n") for block in re.split(r"\r?\n\r?\n", text) if block.strip()]


def _typed(value: str | None) -> str:
    """`rfc822; bob@example.com` → `bob@example.com`; `dns; mx.example.com` → `mx.example.com`."""
    kind, sep, rest = (value or "").strip().partition(";")
    return (rest if sep else kind).strip().strip("<>")


def _address(value: str | None) -> str:
    return _typed(value).lower()


def _read_dsn(parts: list[EmailMessage]) -> Report:
    status_part = next((p for p in parts if p.get_content_type() == "message/delivery-status"), None)
    if status_part is None:
        return Report("")
    blocks = _blocks(status_part)
    if not blocks:
        return Report("")
    reporter = _typed(blocks[0].get("Reporting-MTA"))
    failed = []
    for block in blocks[1:]:
        status = (block.get("Status") or "").strip()
        if (block.get("Action") or "").strip().lower() != "failed" or not status.startswith("5"):
            continue  # delayed, delivered, relayed, expanded: nothing to do
        recipient = _address(block.get("Final-Recipient") or block.get("Original-Recipient"))
        if "@" not in recipient:
            continue
        diagnostic = " ".join((block.get("Diagnostic-Code") or "").split())
        match = _DIAGNOSTIC.match(diagnostic)
        code, text = (int(match.group(1)), match.group(2)) if match else (550, diagnostic)
        reply = Reply.parse(code, text)
        if reply.enhanced != status:
            reply = Reply(code, status, reply.text)
        failed.append((recipient, reply))
    return Report("bounce" if failed else "", reporter, failed=failed)


def _read_arf(parts: list[EmailMessage]) -> Report:
    feedback = next((p for p in parts if p.get_content_type() == "message/feedback-report"), None)
    if feedback is None:
        return Report("")
    blocks = _blocks(feedback)
    fields = blocks[0] if blocks else EmailMessage()
    if (fields.get("Feedback-Type") or "abuse").strip().lower() not in ("abuse", "fraud", "virus"):
        return Report("")  # not-spam, opt-out lists and the like are not complaints
    named = [_address(v) for v in fields.get_all("Original-Rcpt-To") or []]
    original = next((p for p in parts if p.get_content_type() in ("message/rfc822", "text/rfc822-headers")), None)
    if not named and original is not None:
        inner = original.get_payload()
        inner = inner[0] if isinstance(inner, list) and inner else inner
        headers = inner if isinstance(inner, EmailMessage) else email.message_from_string(str(inner or ""))
        named = [a.lower() for _, a in email.utils.getaddresses(headers.get_all("To") or []) if "@" in a]
    source = _typed(fields.get("Reporting-MTA") or fields.get("User-Agent") or fields.get("Source-IP"))
    return Report("complaint", source, complained=[a for a in named if "@" in a])


def apply(settings: dict, message_id: str, report: Report) -> None:
    """Apply a report to the message it came back for (inside a write transaction), with its
    events; a DSN for the envelope sender is stored in the same transaction."""
    now = clock.now()
    deliveries = {d.rcpt.lower(): d for d in Delivery.select().where(Delivery.message == message_id)}
    if not deliveries:
        return
    if report.kind == "complaint":
        # A report that names no recipient concerns the message's only one, if it had only one.
        addresses = [a for a in report.complained if a in deliveries] or (
            list(deliveries) if len(deliveries) == 1 else []
        )
        for address in addresses:
            reason = f"complaint: feedback report from {report.reporter or 'a mailbox provider'}"
            suppressions.complaint(address, reason, now)
        events.record(
            [
                events.Occurred(message_id, events.COMPLAINED, deliveries[a].rcpt, now, {"reporter": report.reporter})
                for a in addresses
            ]
            or [events.Occurred(message_id, events.COMPLAINED, "", now, {"reporter": report.reporter})]
        )
        log.info("message %s: complaint about %s", message_id, ", ".join(addresses) or "an unnamed recipient")
        return
    failed: list[dsn.FailedRecipient] = []
    attempts, occurred = [], []
    for address, reply in report.failed:
        delivery = deliveries.get(address)
        if delivery is None or delivery.status == BOUNCED:
            continue
        text = f"{reply} (reported later by {report.reporter or 'the remote server'})"
        Delivery.update(status=BOUNCED, last_code=reply.code, last_reply=text, updated_at=now, lease_until=None).where(
            Delivery.id == delivery.id
        ).execute()
        attempts.append(
            {
                "delivery": delivery.id,
                "started_at": now,
                "duration_ms": 0,
                "mx_host": report.reporter,
                "mx_ip": "",
                "tls": "",
                "code": reply.code,
                "enhanced_code": reply.enhanced,
                "text": f"{reply.text} (a bounce that came back later)",
                "outcome": BOUNCED,
            }
        )
        if reply.hard:
            suppressions.hard_bounce(address, str(reply), now)
        failed.append(dsn.FailedRecipient(delivery.rcpt, "failed", reply, report.reporter, now))
        occurred.append(
            events.Occurred(
                message_id,
                events.BOUNCED,
                delivery.rcpt,
                now,
                {"reply": str(reply), "mx": report.reporter, "later": True},
            )
        )
    if not failed:
        return
    db.insert_rows(Attempt, attempts)
    events.record(occurred)
    refresh_messages({message_id})
    message = sent_messages({message_id})[message_id]
    log.info("message %s: %d recipient(s) bounced later", message_id, len(failed))
    if message.mail_from:
        queue_dsn(message, failed, settings, now)


class Arrival:
    """A report on its way in, stored and applied in one transaction: ``read`` runs in intake's
    prepare step, ``store`` is the writer job kind (GroupCommitter.accept)."""

    def __init__(self, settings: dict, message_ids: list[str]):
        self.settings, self.message_ids = settings, message_ids
        self.report = Report("")

    def read(self, item: intake.Incoming) -> intake.Incoming:
        self.report = read(item.data)
        return item

    def store(self, items: list[intake.Incoming]) -> list[str]:
        ids = intake.store_many(items)
        if self.report.kind:
            for message_id in self.message_ids:
                apply(self.settings, message_id, self.report)
        return ids

"""Delivery status notifications: RFC 3464 `multipart/report` bounces to the envelope sender."""

from __future__ import annotations

import datetime as dt
import email.policy
import email.utils
from dataclasses import dataclass
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

from .replies import Reply


@dataclass(frozen=True)
class FailedRecipient:
    address: str
    action: str  # "failed" (RFC 3464 §2.3.3), for bounced and given-up deliveries alike
    reply: Reply
    remote_mta: str  # "" when no server was reached (DNS, null MX, connection refused)
    last_attempt: dt.datetime


def _rfc2822(when: dt.datetime) -> str:
    return email.utils.format_datetime(when.replace(tzinfo=dt.UTC))


def _fields(pairs: list[tuple[str, str]]) -> Message:
    block = Message()
    for name, value in pairs:
        block[name] = value
    return block


def _explain(rcpt: FailedRecipient) -> str:
    if rcpt.reply.permanent:
        why = "was refused" if rcpt.remote_mta else "could not be delivered"
    else:
        why = "could not be delivered in time (the last attempt was deferred)"
    server = f" by {rcpt.remote_mta}" if rcpt.remote_mta else ""
    return f"<{rcpt.address}>: the message {why}{server}:\n    {rcpt.reply}"


def build(
    *,
    hostname: str,
    dsn_id: str,
    original_id: str,
    envelope_sender: str,
    received_at: dt.datetime,
    original_headers: bytes,
    recipients: list[FailedRecipient],
    now: dt.datetime,
) -> bytes:
    """Return the bytes (CRLF) of one DSN reporting every recipient in ``recipients``."""
    report = MIMEMultipart("report", report_type="delivery-status")
    report["From"] = f"Mail Delivery System <MAILER-DAEMON@{hostname}>"
    report["To"] = envelope_sender
    report["Subject"] = "Undelivered Mail Returned to Sender"
    report["Date"] = _rfc2822(now)
    report["Message-ID"] = f"<{dsn_id}@{hostname}>"
    report["Auto-Submitted"] = "auto-replied"  # RFC 3834: no auto-replies to this
    human = (
        f"This is the mail system at {hostname}.\n\n"
        "Your message could not be delivered to one or more recipients.\n\n"
        + "\n\n".join(_explain(r) for r in recipients)
        + f"\n\nThe message was accepted at {_rfc2822(received_at)} with the id {original_id}.\n"
        "Its headers are attached.\n"
    )
    report.attach(MIMEText(human, "plain", "us-ascii" if human.isascii() else "utf-8"))

    status = MIMEBase("message", "delivery-status")
    blocks = [
        _fields(
            [
                ("Reporting-MTA", f"dns; {hostname}"),
                ("X-Appliance-Queue-ID", original_id),
                ("Arrival-Date", _rfc2822(received_at)),
            ]
        )
    ]
    for rcpt in recipients:
        # RFC 6533: a non-ASCII address is reported with the utf-8 address type.
        kind = "rfc822" if rcpt.address.isascii() else "utf-8"
        pairs = [
            ("Final-Recipient", f"{kind}; {rcpt.address}"),
            ("Action", rcpt.action),
            ("Status", rcpt.reply.status),
        ]
        if rcpt.remote_mta:
            pairs.append(("Remote-MTA", f"dns; {rcpt.remote_mta}"))
        pairs.append(("Diagnostic-Code", f"smtp; {rcpt.reply}"))
        pairs.append(("Last-Attempt-Date", _rfc2822(rcpt.last_attempt)))
        blocks.append(_fields(pairs))
    status.set_payload(blocks)
    report.attach(status)

    text = original_headers.decode("utf-8", "replace")
    headers = MIMEText(text, "rfc822-headers", "us-ascii" if text.isascii() else "utf-8")
    report.attach(headers)
    # SMTPUTF8 policy: a non-ASCII address (RFC 6531) stays readable; ASCII reports are unchanged.
    return report.as_bytes(policy=email.policy.SMTPUTF8)

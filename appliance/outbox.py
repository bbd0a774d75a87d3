"""Mail the appliance writes itself (sender verification links, alert notices).

It goes through the same intake and queue as a client's mail: stored durably, then delivered by the
workers (and DKIM-signed there when its domain is verified).
"""

from __future__ import annotations

import email.policy
from email.message import EmailMessage

from . import db, intake, queue

SYSTEM_PRIORITY = 2  # ahead of normal mail: someone is waiting for a verification link


def from_address(settings: dict) -> str:
    """The address the appliance's own mail comes from (NOTIFY_FROM, else postmaster@HOSTNAME)."""
    return settings["NOTIFY_FROM"] or f"postmaster@{settings['HOSTNAME']}"


def send(settings: dict, to: list[str], subject: str, text: str) -> str:
    """Store a plain-text message from the appliance to ``to`` and enqueue it; return its id."""
    sender = from_address(settings)
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = f"Mail relay {settings['HOSTNAME']} <{sender}>"
    message["To"] = ", ".join(to)
    message["Subject"] = subject
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to this
    message.set_content(text)
    item = intake.prepare(
        message.as_bytes(), mail_from=sender, rcpts=list(to), hostname=settings["HOSTNAME"],
        client_ip="127.0.0.1", client_helo=settings["HOSTNAME"], tls="", username=None,
        account_id=None, account_priority=SYSTEM_PRIORITY,
    )
    with db.atomic_write():
        intake.store(item)
    queue.enqueue_messages(queue.runtime(settings), [item.id])
    return item.id

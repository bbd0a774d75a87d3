"""Notices: the mail the appliance writes itself (sender verification links, alert mails, test messages).

A notice is stored through the same intake as a client's mail, in the caller's transaction when
there is one, and handed to the queue by the events layer right after that transaction commits
(its `accepted` event, see appliance/followups.py): it never waits for a sweep. The workers
deliver it (and DKIM-sign it when its domain is verified). DSNs are built in delivery/dsn.py.
"""

from __future__ import annotations

import email.policy
from email.message import EmailMessage

from . import db, intake
from .policy import acceptance

SYSTEM_PRIORITY = 2  # ahead of normal mail: someone is waiting for a verification link


def from_address(settings: dict) -> str:
    """The address the appliance's own mail comes from (NOTIFY_FROM, else postmaster@HOSTNAME)."""
    return settings["NOTIFY_FROM"] or f"postmaster@{settings['HOSTNAME']}"


def send(settings: dict, to: list[str], subject: str, text: str) -> str:
    """Store a plain-text notice from the appliance to ``to``; return its id."""
    sender = from_address(settings)
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = f"Mail relay {settings['HOSTNAME']} <{sender}>"
    message["To"] = ", ".join(to)
    message["Subject"] = subject
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to this
    message.set_content(text)
    item = intake.prepare(
        message.as_bytes(),
        mail_from=sender,
        rcpts=list(to),
        hostname=settings["HOSTNAME"],
        client_ip="127.0.0.1",
        client_helo=settings["HOSTNAME"],
        tls="",
        username=None,
        account_id=None,
        account_priority=SYSTEM_PRIORITY,
    )
    item.via = "notice"
    with db.atomic_write():
        intake.store(item)
    return item.id


class NoticeError(ValueError):
    """A notice that cannot be sent as asked (shown as is)."""


def send_test(settings: dict, recipient: str) -> str:
    """Store a test message to ``recipient`` (`appliance send-test`, the setup page); return its id.
    It takes the queue, routing, DKIM signing and TLS that applications' mail takes."""
    recipient = recipient.strip()
    problem = acceptance.address_problem(recipient)
    if problem:
        raise NoticeError(f"{recipient!r} is not an email address: {problem}")
    return send(
        settings,
        [recipient],
        f"Test message from {settings['HOSTNAME']}",
        f"This is a test message sent by the mail relay {settings['HOSTNAME']}.\n"
        "It went through the same queue, routing, DKIM signing and TLS as your applications' mail.\n",
    )

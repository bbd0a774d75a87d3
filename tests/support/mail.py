"""Mail the tests send: over SMTP through a relay, stored directly, and what became of it."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

from appliance import db, intake
from appliance.models import Delivery, Message
from tests.support.wait import wait_for

SENDER = "shop@shop.test"
ORDER = b"From: orders@shop.test\r\nTo: ann@example.test\r\nSubject: Order 1001\r\n\r\nThanks!\r\n"


def submit(relay, account, rcpts, *, mail_from=SENDER, subject="Order 1", extra=b"", options=()) -> str:
    username, password = account
    body = f"From: {mail_from or 'x@shop.test'}\r\nTo: {', '.join(rcpts)}\r\nSubject: {subject}\r\n".encode()
    with relay.smtp.submission() as client:
        client.login(username, password)
        client.sendmail(
            mail_from or "<>", rcpts, body + extra + b"\r\nThank you for your order.\r\n", mail_options=list(options)
        )
        reply = client.noop()
    assert reply[0] == 250
    return Message.select().order_by(Message.received_at.desc(), Message.id.desc()).first().id


def deliveries(message_id: str) -> list[Delivery]:
    return list(Delivery.select().where(Delivery.message == message_id).order_by(Delivery.id))


def settled(message_id: str, *statuses: str):
    """Wait until every delivery of the message has one of ``statuses``; return the rows."""
    return wait_for(lambda: (rows := deliveries(message_id)) and all(d.status in statuses for d in rows) and rows)


def send(relay, account, msg: EmailMessage, to: str = "alice@example.test") -> None:
    with relay.smtp.submission() as client:
        client.login(*account)
        client.sendmail("news@shop.test", [to], msg.as_bytes(policy=email.policy.SMTP))


def transaction(client, rcpts=("bob@example.test",), headers: bytes = b"") -> tuple[int, str, str | None]:
    """One mail transaction (``headers``: more header lines, CRLF-ended); return the MAIL FROM reply
    when it refuses, else the DATA reply and the queue id when accepted."""
    code, text = client.mail("orders@shop.test")
    if code != 250:
        client.rset()
        return code, text.decode(), None
    for rcpt in rcpts:
        client.rcpt(rcpt)
    code, text = client.data(b"From: orders@shop.test\r\nSubject: Order\r\n" + headers + b"\r\nThanks.\r\n")
    return code, text.decode(), text.decode().rsplit(" ", 1)[-1]


def session(smtp_server, account):
    client = smtp_server.submission()
    client.login(*account)
    return client


def send_one(client) -> None:
    assert client.mail("orders@shop.test")[0] == 250
    assert client.rcpt("ann@example.test")[0] == 250
    assert client.data(ORDER)[0] == 250


def store(app, rcpts, priority=3, domain="workspace.test") -> list[int]:
    """Store one message per recipient as intake does; return the delivery ids."""
    ids = []
    for rcpt in rcpts:
        item = intake.prepare(
            f"From: shop@shop.test\r\nSubject: {rcpt}\r\n\r\nbody\r\n".encode(),
            mail_from="shop@shop.test",
            rcpts=[f"{rcpt}@{domain}"],
            hostname="relay.test",
            client_ip="127.0.0.1",
            client_helo="client.test",
            tls="",
            username=None,
            account_id=None,
            account_priority=priority,
        )
        with db.atomic_write():
            intake.store(item)
        ids += [d.id for d in Delivery.select().where(Delivery.message == item.id)]
    return ids

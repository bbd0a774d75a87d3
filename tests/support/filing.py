"""Mail that campaigns and lists file: a message with the headers an app adds, sent over SMTP."""

from __future__ import annotations


def mail(subject: str, *headers: str, to: str = "alice@example.test", body: str = "Thank you.") -> bytes:
    lines = [
        "From: Shop <orders@shop.test>",
        f"To: {to}",
        f"Subject: {subject}",
        "Message-ID: <m-1@shop.test>",
        "Date: Fri, 04 Dec 2026 10:00:00 +0000",
        *headers,
    ]
    return ("\r\n".join(lines) + f"\r\n\r\n{body}\r\n").encode()


def send(relay, account, data: bytes, rcpts=("alice@example.test",)) -> str:
    with relay.smtp.submission() as client:
        client.login(*account)
        client.mail("orders@shop.test")
        for rcpt in rcpts:
            client.rcpt(rcpt)
        code, reply = client.data(data)
    assert code == 250, reply
    return reply.decode().rsplit(" ", 1)[-1]

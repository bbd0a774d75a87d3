"""Accepted mail: normalise, stamp headers, then group-commit it durably before the 250."""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.header import decode_header, make_header

from ulid import ULID

from . import clock, db, policy
from .models import HELD, QUEUED, RECEIVED, SUPPRESSED, Delivery, Message, MessageBody, Suppression
from .smtp import replies

log = logging.getLogger(__name__)

# RFC 5322 §2.2: field-name is printable US-ASCII except colon; obsolete syntax allows WSP before ':'.
_FIELD = re.compile(rb"^([\x21-\x39\x3b-\x7e]+)[ \t]*:")


class MalformedMessage(ValueError):
    """The message cannot be accepted as it is; the text says why."""


class StorageError(Exception):
    """Nothing was stored; ``reply`` is the SMTP answer to give."""

    def __init__(self, reply: str):
        super().__init__(reply)
        self.reply = reply


@dataclass
class Incoming:
    """A message ready to store: envelope, final bytes and the summary the log shows."""

    id: str
    mail_from: str
    rcpts: list[str]
    data: bytes
    account_id: int | None = None
    direction: str = "outbound"
    priority: int = 3
    client_ip: str = ""
    client_helo: str = ""
    tls: str = ""
    summary: dict[str, str] = field(default_factory=dict)
    from_addresses: list[str] = field(default_factory=list)  # read from From: for sender authorization
    sender_addresses: list[str] | None = None  # read from Sender: (None: there is no Sender:)
    hold_reply: str = ""  # sending policy (issue 6): store the deliveries as held, with this reason
    hold_until: dt.datetime | None = None  # when a quota hold is released (None: by an admin)


def normalise_line_endings(data: bytes) -> bytes:
    """Turn every bare CR or LF into CRLF, so no byte sequence can end DATA early downstream."""
    crlf = data.count(b"\r\n")
    if data.count(b"\r") == crlf and data.count(b"\n") == crlf:
        return data  # already canonical (the usual case): three C-speed scans, no substitution
    # CRLF first (so it stays one line break), then every lone CR, each a C-speed pass: a regular
    # expression substitution was ten times slower on a large LF-only message.
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


def header_limits_refusal(data: bytes, *, max_size: int, max_lines: int) -> str | None:
    """Return the reply refusing a header section over ``max_size`` octets or ``max_lines`` lines
    (fields and their folded continuation lines), else None. Looks at no more than ``max_size``
    octets, so it is cheap enough for the event loop whatever the message."""
    if data.startswith(b"\r\n"):
        return None  # an empty header section
    end = data.find(b"\r\n\r\n", 0, max_size + 2)
    if end < 0:
        if len(data) > max_size:
            return replies.HEADER_TOO_BIG.format(limit=max_size)
        end = len(data)
    if data.count(b"\r\n", 0, end) >= max_lines:
        return replies.TOO_MANY_HEADER_LINES.format(limit=max_lines)
    return None


def parse_header_block(data: bytes) -> tuple[list[tuple[str, str]], int]:
    """Return the header fields (name, unfolded value) and the offset where the body starts.

    Raises MalformedMessage when a line of the header section is neither a field nor a folded
    continuation (RFC 5322 §2.2), rather than silently treating the rest as body.
    """
    if data.startswith(b"\r\n"):
        return [], 2  # an empty header section
    end = data.find(b"\r\n\r\n")
    header_bytes, body_start = (data, len(data)) if end < 0 else (data[: end + 2], end + 4)
    # Each field's lines are collected and joined once: appending to a bytes value for every
    # continuation line copied the value each time, quadratic in a field folded over many lines.
    fields: list[tuple[bytes, list[bytes]]] = []
    lines = header_bytes.removesuffix(b"\r\n").split(b"\r\n") if header_bytes else []
    for number, line in enumerate(lines, start=1):
        if line[:1] in (b" ", b"\t"):
            if not fields:
                raise MalformedMessage("the first header line is a continuation line")
            fields[-1][1].append(line.strip())
            continue
        match = _FIELD.match(line)
        if not match:
            shown = line[:40].decode("utf-8", "replace")
            raise MalformedMessage(f"header line {number} is not a 'Name: value' field: {shown!r}")
        fields.append((match.group(1), [line[match.end():].strip()]))
    decoded = [(n.decode("ascii"), b" ".join(parts).decode("utf-8", "replace")) for n, parts in fields]
    return decoded, body_start


def _decode(value: str) -> str:
    if "=?" not in value:
        return value  # no RFC 2047 encoded word
    try:
        return str(make_header(decode_header(value)))
    except (ValueError, LookupError, UnicodeError):
        return value


_date: tuple[int, str] = (0, "")


def _rfc5322_now() -> str:
    """The current time as an RFC 5322 date in GMT, formatted once per second (it is stamped on
    every message, and email.utils.formatdate is not cheap)."""
    global _date
    second = int(time.time())
    if _date[0] != second:
        _date = (second, email.utils.formatdate(second, usegmt=True))
    return _date[1]


def received_header(
    *, helo: str, ip: str, hostname: str, tls: str, username: str | None, message_id: str, rcpts: list[str]
) -> bytes:
    """Build our Received: trace field (RFC 5321 §4.4; protocol names from RFC 3848)."""
    protocol = "ESMTP" + ("S" if tls else "") + ("A" if username else "")
    lines = [f"Received: from {helo or 'unknown'} ([{ip}])", f"\tby {hostname} (appliance) with {protocol}"]
    if tls:
        lines.append(f"\t({tls})")
    if username:
        lines.append(f"\t(authenticated as {username})")
    lines.append(f"\tid {message_id}")
    if len(rcpts) == 1:
        lines.append(f"\tfor <{rcpts[0]}>")
    lines[-1] += ";"
    lines.append("\t" + _rfc5322_now())
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def prepare(
    raw: bytes,
    *,
    mail_from: str,
    rcpts: list[str],
    hostname: str,
    client_ip: str,
    client_helo: str,
    tls: str,
    username: str | None,
    account_id: int | None,
    account_priority: int,
    direction: str = "outbound",
) -> Incoming:
    """Normalise and stamp a received message (pure; raises MalformedMessage)."""
    data = normalise_line_endings(raw)
    fields, _ = parse_header_block(data)
    lower: dict[str, str] = {}
    counts: dict[str, int] = {}
    for name, value in fields:
        key = name.lower()
        lower.setdefault(key, value)
        counts[key] = counts.get(key, 0) + 1
    if "from" not in lower:
        raise MalformedMessage("there is no From: header")
    # RFC 5322 §3.6: at most one From: and one Sender:. Only the first was checked against the
    # account's senders, so a second one could show another name to the recipient.
    for name in ("From", "Sender"):
        if counts.get(name.lower(), 0) > 1:
            raise MalformedMessage(f"more than one {name}: header (RFC 5322 3.6 allows one)")
    message_id = str(ULID())
    extra = b""
    if "message-id" not in lower:
        lower["message-id"] = f"<{message_id}@{hostname}>"
        extra += f"Message-ID: {lower['message-id']}\r\n".encode()
    if "date" not in lower:
        extra += f"Date: {_rfc5322_now()}\r\n".encode()
    trace = received_header(
        helo=client_helo, ip=client_ip, hostname=hostname, tls=tls, username=username,
        message_id=message_id, rcpts=rcpts,
    )
    return Incoming(
        id=message_id,
        mail_from=mail_from,
        rcpts=rcpts,
        data=trace + extra + data,
        account_id=account_id,
        direction=direction,
        priority=policy.effective_priority(account_priority, lower),
        client_ip=client_ip,
        client_helo=client_helo[:255],
        tls=tls,
        from_addresses=policy.header_addresses(lower["from"]),
        sender_addresses=policy.header_addresses(lower["sender"]) if "sender" in lower else None,
        summary={
            "subject": _decode(lower.get("subject", ""))[:255],
            "from_header": _decode(lower["from"])[:255],
            "message_id_header": lower["message-id"][:255],
        },
    )


def store(item: Incoming) -> str:
    """Store one message (inside the caller's transaction); return its id."""
    return store_many([item])[0]


def store_many(items: list[Incoming]) -> list[str]:
    """Insert messages, their bodies and one Delivery per recipient, one statement per table
    (inside the caller's transaction); return their ids. Suppressed recipients are looked up once."""
    now = clock.now()
    suppressed = Suppression.reasons_for([r for i in items if i.direction == "outbound" for r in i.rcpts])
    messages, bodies, deliveries = [], [], []
    for item in items:
        waiting = HELD if item.hold_reply else QUEUED
        if item.direction == "inbound":
            status = RECEIVED
        elif item.rcpts and all(r.lower() in suppressed for r in item.rcpts):
            status = SUPPRESSED
        else:
            status = waiting
        messages.append({
            "id": item.id, "account": item.account_id, "direction": item.direction, "status": status,
            "mail_from": item.mail_from, "rcpt_count": len(item.rcpts), "size": len(item.data),
            "priority": item.priority, "client_ip": item.client_ip, "client_helo": item.client_helo,
            "tls": item.tls, "received_at": now, "subject": item.summary.get("subject", ""),
            "from_header": item.summary.get("from_header", ""),
            "message_id_header": item.summary.get("message_id_header", ""),
        })
        bodies.append({"message": item.id, "data": item.data})
        if item.direction == "inbound":
            continue
        for rcpt in item.rcpts:
            reason = suppressed.get(rcpt.lower())
            deliveries.append({
                "message": item.id, "rcpt": rcpt, "domain": policy.split_address(rcpt)[1],
                "status": SUPPRESSED if reason is not None else waiting, "priority": item.priority,
                "next_attempt_at": item.hold_until or now, "updated_at": now,
                "last_reply": f"suppressed: {reason}" if reason is not None else item.hold_reply,
            })
    db.insert_rows(Message, messages)
    db.insert_rows(MessageBody, bodies)
    db.insert_rows(Delivery, deliveries)
    return [item.id for item in items]


def _storage_reply(exc: BaseException | None) -> str:
    # SQLite rolls back by itself on SQLITE_FULL, so the error we catch may be the failed ROLLBACK
    # that followed; the cause is further down the exception context chain.
    while exc is not None:
        text = str(exc).lower()
        if "full" in text or "no space" in text or "disk i/o" in text:
            return replies.STORAGE_FULL
        exc = exc.__context__
    return replies.LOCAL_ERROR


class Refused(Exception):
    """The message is refused for a reason of policy; ``reply`` is the SMTP answer."""

    def __init__(self, reply: str):
        super().__init__(reply)
        self.reply = reply


class GroupCommitter:
    """Accepted mail's way to disk: each message is a job of the process's GroupWriter.

    Messages that wait together are written with one statement per table in one transaction,
    and their sessions are answered after that transaction is durable.
    """

    def __init__(self, max_batch: int = 64, on_committed: Callable[[list[str]], None] | None = None):
        self.writer = db.GroupWriter(max_batch)
        self.checkpointer = db.Checkpointer()
        self.on_committed = on_committed

    def start(self) -> None:
        self.writer.start()
        self.checkpointer.start()
        db.use_writer(self.writer)

    def stop(self) -> None:
        db.use_writer(None)
        self.writer.stop()
        self.checkpointer.stop()

    async def accept(self, prepare: Callable[[], Incoming], store: db.Many | None = None,
                     after: db.After | None = None) -> str:
        """Prepare a message on the writer thread, store it; return its id once durable.

        ``prepare`` may raise MalformedMessage or Refused (nothing is stored); a storage failure
        raises StorageError with the reply to give. ``store`` and ``after`` replace store_many and
        the on_committed hook for a message that does more in its transaction (bounces.Arrival).
        """
        loop = asyncio.get_running_loop()
        try:
            return await self.writer.submit(store or store_many, prepare=prepare, after=after or self.on_committed,
                                            loop=loop)
        except db.WRITE_ERRORS as exc:
            log.error("could not store a message: %s", exc)
            raise StorageError(_storage_reply(exc)) from None

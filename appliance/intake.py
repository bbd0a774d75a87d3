"""Accepted mail: normalise, stamp headers, then group-commit it durably before the 250."""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ulid import ULID

from . import clock, db, events, message_bytes, replies, tracking
from .models import (
    EXPANDING,
    HELD,
    QUEUED,
    RECEIVED,
    SUPPRESSED,
    Delivery,
    ListMember,
    Message,
    MessageBody,
    Suppression,
)
from .policy import acceptance

log = logging.getLogger(__name__)


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
    hold_reply: str = ""  # sending policy: store the deliveries as held, with this reason
    hold_until: dt.datetime | None = None  # when a quota hold is released (None: by an admin)
    via: str = "smtp"  # who handed it in: smtp | notice (the appliance's own mail) | dsn
    stream: str = "transactional"
    track_opens: bool = False
    track_clicks: bool = False
    from_domain: str = ""  # of the From: address, lower-cased: what an unsubscribe is scoped to
    campaign_ref: str = ""  # the campaign id its campaign_guid (or X-Campaign-ID) header named ("": none)
    list_ref: str = ""  # the list id its mailing_list_id header named ("": none)
    campaign_id: str | None = None  # the campaign it is filed under (appliance/campaigns.py)
    list_id: str | None = None  # the list its figures show under (appliance/lists.py)
    members_list: str | None = None  # the list its recipients join as members
    list_send: str | None = None  # sent to this list's address: the workers add its members (appliance/fanout.py)
    subject: str = ""  # its Subject:, decoded and whole (the campaigns' subject rule compares it)
    tags: list[str] = field(default_factory=list)  # the HTTP API's tags, kept on the accepted event

    @property
    def personal(self) -> bool:
        """Each recipient gets a copy of its own (links and unsubscribe address that name it)."""
        return self.stream == "broadcast" or self.track_opens or self.track_clicks


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
    *,
    helo: str,
    ip: str,
    hostname: str,
    tls: str,
    username: str | None,
    message_id: str,
    rcpts: list[str],
    protocol: str = "",
) -> bytes:
    """Build our Received: trace field (RFC 5321 §4.4; protocol names from RFC 3848, or ``protocol``:
    HTTP or HTTPS for the HTTP API)."""
    protocol = protocol or "ESMTP" + ("S" if tls else "") + ("A" if username else "")
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
    account_stream: str = "transactional",
    account_track_opens: bool | None = None,
    account_track_clicks: bool | None = None,
    list_send: str | None = None,
    protocol: str = "",
) -> Incoming:
    """Normalise and stamp a received message (pure; raises message_bytes.MalformedMessage).

    The relay's own headers (X-Stream, X-Track-Opens, X-Track-Clicks, campaign_guid, X-Campaign-ID,
    mailing_list_id) are read and removed. Mail to a list address (``list_send``: the list's id) is
    broadcast mail, whatever X-Stream says: each member gets a copy with its own unsubscribe link."""
    data = message_bytes.normalise_line_endings(raw)
    fields, _ = message_bytes.parse_header_block(data)
    lower: dict[str, str] = {}
    counts: dict[str, int] = {}
    for name, value in fields:
        key = name.lower()
        lower.setdefault(key, value)
        counts[key] = counts.get(key, 0) + 1
    if "from" not in lower:
        raise message_bytes.MalformedMessage("there is no From: header")
    # RFC 5322 §3.6: at most one From: and one Sender:. Only the first was checked against the
    # account's senders, so a second one could show another name to the recipient.
    for name in ("From", "Sender"):
        if counts.get(name.lower(), 0) > 1:
            raise message_bytes.MalformedMessage(f"more than one {name}: header (RFC 5322 3.6 allows one)")
    try:
        chosen = acceptance.stream_and_tracking(lower, account_stream, account_track_opens, account_track_clicks)
    except ValueError as exc:
        raise message_bytes.MalformedMessage(str(exc)) from None
    campaign_ref, list_ref = acceptance.campaign_and_list(lower)
    if any(name in lower for name in acceptance.RELAY_HEADERS):
        data = message_bytes.without_fields(data, set(acceptance.RELAY_HEADERS))
    from_addresses = acceptance.header_addresses(lower["from"])
    subject = message_bytes.decode_words(lower.get("subject", ""))
    message_id = str(ULID())
    extra = b""
    if "message-id" not in lower:
        lower["message-id"] = f"<{message_id}@{hostname}>"
        extra += f"Message-ID: {lower['message-id']}\r\n".encode()
    if "date" not in lower:
        extra += f"Date: {_rfc5322_now()}\r\n".encode()
    trace = received_header(
        helo=client_helo,
        ip=client_ip,
        hostname=hostname,
        tls=tls,
        username=username,
        message_id=message_id,
        rcpts=rcpts,
        protocol=protocol,
    )
    return Incoming(
        id=message_id,
        mail_from=mail_from,
        rcpts=rcpts,
        data=trace + extra + data,
        account_id=account_id,
        direction=direction,
        priority=acceptance.effective_priority(account_priority, lower),
        client_ip=client_ip,
        client_helo=client_helo[:255],
        tls=tls,
        from_addresses=from_addresses,
        sender_addresses=acceptance.header_addresses(lower["sender"]) if "sender" in lower else None,
        stream="broadcast" if list_send else chosen.stream if direction == "outbound" else "transactional",
        list_send=list_send,
        track_opens=chosen.opens and direction == "outbound",
        track_clicks=chosen.clicks and direction == "outbound",
        from_domain=acceptance.split_address(from_addresses[0])[1].lower() if from_addresses else "",
        campaign_ref=campaign_ref if direction == "outbound" else "",
        list_ref=list_ref if direction == "outbound" else "",
        subject=subject,
        summary={
            "subject": subject[:255],
            "from_header": message_bytes.decode_words(lower["from"])[:255],
            "message_id_header": lower["message-id"][:255],
        },
    )


def store(item: Incoming) -> str:
    """Store one message (inside the caller's transaction); return its id."""
    return store_many([item])[0]


def store_many(items: list[Incoming]) -> list[str]:
    """Insert messages, their bodies and one Delivery per recipient, one statement per table, and add the
    recipients to the list they join (inside the caller's transaction); return their ids. Suppressed
    recipients are looked up once."""
    now = clock.now()
    suppressed = Suppression.reasons_for([r for i in items if i.direction == "outbound" for r in i.rcpts])
    messages, bodies, deliveries, occurred, members = [], [], [], [], []
    for item in items:
        waiting = HELD if item.hold_reply else QUEUED
        if item.direction == "inbound":
            status = RECEIVED
        elif item.list_send:
            status = EXPANDING  # no deliveries yet: the workers add one per member
        elif item.rcpts and all(
            Suppression.applying(suppressed.get(r.lower()), item.stream, item.from_domain) is not None
            for r in item.rcpts
        ):
            status = SUPPRESSED
        else:
            status = waiting
        messages.append(
            {
                "id": item.id,
                "account": item.account_id,
                "direction": item.direction,
                "status": status,
                "mail_from": item.mail_from,
                "rcpt_count": 0 if item.list_send else len(item.rcpts),
                "size": len(item.data),
                "priority": item.priority,
                "client_ip": item.client_ip,
                "client_helo": item.client_helo,
                "tls": item.tls,
                "received_at": now,
                "subject": item.summary.get("subject", ""),
                "from_header": item.summary.get("from_header", ""),
                "message_id_header": item.summary.get("message_id_header", ""),
                "stream": item.stream,
                "track_opens": item.track_opens,
                "track_clicks": item.track_clicks,
                "campaign": item.campaign_id,
                "mailing_list": item.list_id,
            }
        )
        bodies.append({"message": item.id, "data": item.data})
        accepted: dict = {"via": item.via}
        if item.tags:
            accepted["tags"] = item.tags
        if item.list_send:
            accepted["list"] = item.list_send
            if item.hold_reply:  # its members' deliveries are added held (fanout.py)
                accepted["held"] = item.hold_reply
                accepted["until"] = item.hold_until.isoformat() if item.hold_until else None
        occurred.append(events.Occurred(item.id, events.ACCEPTED, "", now, accepted))
        if item.direction == "inbound" or item.list_send:
            continue
        if item.members_list:
            members.extend((item.members_list, rcpt.lower()) for rcpt in item.rcpts)
        for rcpt in item.rcpts:
            reason = Suppression.applying(suppressed.get(rcpt.lower()), item.stream, item.from_domain)
            if reason is not None:
                occurred.append(events.Occurred(item.id, events.SUPPRESSED, rcpt, now, {"reason": reason}))
            elif item.hold_reply:
                occurred.append(events.Occurred(item.id, events.HELD, rcpt, now, {"reason": item.hold_reply}))
            deliveries.append(
                {
                    "message": item.id,
                    "rcpt": rcpt,
                    "domain": acceptance.split_address(rcpt)[1],
                    "status": SUPPRESSED if reason is not None else waiting,
                    "priority": item.priority,
                    "next_attempt_at": item.hold_until or now,
                    "updated_at": now,
                    "last_reply": f"suppressed: {reason}" if reason is not None else item.hold_reply,
                    "tracking_id": tracking.new_id() if item.personal and reason is None else None,
                }
            )
    db.insert_rows(Message, messages)
    db.insert_rows(MessageBody, bodies)
    db.insert_rows(Delivery, deliveries)
    ListMember.join(members, "mail", now)
    events.record(occurred)
    return [item.id for item in items]


def storage_reply(exc: BaseException | None) -> str:
    """The SMTP reply for a failed write or connection: STORAGE_FULL when the disk is full, else LOCAL_ERROR."""
    # SQLite rolls back by itself on SQLITE_FULL, so the error we catch may be the failed ROLLBACK
    # that followed; the cause is further down the exception context chain.
    while exc is not None:
        text = str(exc).lower()
        if "full" in text or "no space" in text or "disk i/o" in text:
            return replies.STORAGE_FULL
        exc = exc.__context__
    return replies.LOCAL_ERROR


class Refused(Exception):
    """The message is refused for a reason of policy; ``reply`` is the SMTP answer, ``reason`` its
    stable slug (a Decision's)."""

    def __init__(self, reply: str, reason: str = ""):
        super().__init__(reply)
        self.reply = reply
        self.reason = reason


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

    async def accept(self, prepare: Callable[[], Incoming], store: db.Many | None = None) -> str:
        """Prepare a message on the writer thread, store it; return its id once durable.

        ``prepare`` may raise message_bytes.MalformedMessage or Refused (nothing is stored); a storage failure
        raises StorageError with the reply to give. ``store`` replaces store_many for a message
        that does more in its transaction (bounces.Arrival).
        """
        loop = asyncio.get_running_loop()
        try:
            return await self.writer.submit(store or store_many, prepare=prepare, after=self.on_committed, loop=loop)
        except db.WRITE_ERRORS as exc:
            log.error("could not store a message: %s", exc)
            raise StorageError(storage_reply(exc)) from None


def accept_blocking(prepare: Callable[[], Incoming], store: db.Many | None = None, after=None) -> Any:
    """GroupCommitter.accept for a thread that may wait (the HTTP API's): prepare and store the
    message on the process's writer when one runs (else here), and return what ``store`` gave for
    it (store_many: its id) once durable; ``after`` gets the results after the commit. Raises as
    accept does."""
    try:
        return db.write_many(store or store_many, None, after=after, prepare=prepare).result()
    except db.WRITE_ERRORS as exc:
        log.error("could not store a message: %s", exc)
        raise StorageError(storage_reply(exc)) from None

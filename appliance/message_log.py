"""The message log: search with keyset paging, newest first, and a message's detail (its deliveries,
attempts and events), and its content as the admins may read it. The dashboard's message pages and
`appliance messages list` / `show` read the same."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from dataclasses import dataclass, field
from typing import Any

from peewee import JOIN, Tuple

from . import events
from .models import (
    DELIVERY_STATUSES,
    PARTIAL,
    RECEIVED,
    Attempt,
    Delivery,
    Message,
    MessageBody,
    SmtpAccount,
)
from .policy import acceptance

STATUSES = (*DELIVERY_STATUSES, PARTIAL, RECEIVED)
FILTERS = ("rcpt", "sender", "subject", "msgid", "account", "status", "stream", "since", "until")


@dataclass
class Page:
    """One page of the search: the messages (each with its account loaded), each message's deliveries
    in order, and the cursor of the next page (None on the last)."""

    messages: list[Message]
    recipients: dict[str, list[Delivery]]
    next_cursor: str | None


@dataclass
class Detail:
    """A message (its account loaded), its deliveries in order, every attempt oldest first (each with
    its delivery loaded) and its events (events.timeline)."""

    message: Message
    deliveries: list[Delivery]
    attempts: list[Attempt]
    events: list[dict[str, Any]]

    def attempts_by_delivery(self) -> dict[int, list[Attempt]]:
        found: dict[int, list[Attempt]] = {d.id: [] for d in self.deliveries}
        for attempt in self.attempts:
            found[attempt.delivery_id].append(attempt)
        return found


def _day(text: str) -> dt.datetime | None:
    try:
        return dt.datetime.strptime(text, "%Y-%m-%d")
    except ValueError:
        return None


def parse_filters(args) -> tuple[dict[str, str], dict[str, str]]:
    """Read the search fields (a mapping of FILTERS to text); return (filters that apply, errors by field)."""
    filters = {k: (args.get(k) or "").strip() for k in FILTERS if (args.get(k) or "").strip()}
    errors = {}
    for key in ("since", "until"):
        if key in filters and _day(filters[key]) is None:
            errors[key] = "Use a date like 2025-01-31."
    if "account" in filters and not filters["account"].isdigit():
        errors["account"] = "Pick an account from the list."
    if "status" in filters and filters["status"] not in STATUSES:
        errors["status"] = "Pick a status from the list."
    if "stream" in filters and filters["stream"] not in acceptance.STREAMS:
        errors["stream"] = "Pick transactional or broadcast."
    return {k: v for k, v in filters.items() if k not in errors}, errors


def _where(filters: dict[str, str]) -> list:
    conditions = []
    if rcpt := filters.get("rcpt"):
        # An address matches exactly; a bare domain matches every recipient there (both indexed).
        match = Delivery.rcpt == rcpt if "@" in rcpt else Delivery.domain == rcpt.lower().lstrip("@")
        conditions.append(Message.id.in_(Delivery.select(Delivery.message).where(match)))
    if sender := filters.get("sender"):
        conditions.append(
            Message.mail_from == sender
            if "@" in sender.strip("@")
            else Message.mail_from.endswith("@" + sender.lstrip("@"))
        )
    if subject := filters.get("subject"):
        conditions.append(Message.subject.contains(subject))
    if msgid := filters.get("msgid"):
        header = msgid if msgid.startswith("<") else f"<{msgid}>"
        conditions.append((Message.id == msgid.upper()) | (Message.message_id_header == header))
    if account := filters.get("account"):
        conditions.append(Message.account == int(account))
    if status := filters.get("status"):
        conditions.append(Message.status == status)
    if stream := filters.get("stream"):
        conditions.append(Message.stream == stream)
    if since := filters.get("since"):
        conditions.append(Message.received_at >= _day(since))
    if until := filters.get("until"):
        conditions.append(Message.received_at < _day(until) + dt.timedelta(days=1))
    return conditions


def encode_cursor(message: Message) -> str:
    return f"{message.received_at.isoformat()}~{message.id}"


def _decode_cursor(cursor: str) -> tuple[dt.datetime, str] | None:
    stamp, _, message_id = cursor.partition("~")
    try:
        return dt.datetime.fromisoformat(stamp), message_id
    except ValueError:
        return None


def _with_account():
    return Message.select(Message, SmtpAccount).join(SmtpAccount, JOIN.LEFT_OUTER)


def search(filters: dict[str, str], cursor: str | None = None, limit: int = 50) -> Page:
    """Return one page of the messages that match ``filters`` (from parse_filters), newest first,
    after ``cursor`` (keyset on received_at, id; an unreadable cursor starts at the newest)."""
    query = _with_account().order_by(Message.received_at.desc(), Message.id.desc())
    conditions = _where(filters)
    after = _decode_cursor(cursor) if cursor else None
    if after:
        stamp, message_id = after
        # Row-value comparison walks the (received_at, id) index from the cursor: no OFFSET scan.
        conditions.append(
            Tuple(Message.received_at, Message.id) < Tuple(Message.received_at.db_value(stamp), message_id)
        )
    if conditions:
        query = query.where(*conditions)
    rows = list(query.limit(limit + 1))
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, _deliveries(rows), encode_cursor(rows[-1]) if more else None)


def _deliveries(messages: list[Message]) -> dict[str, list[Delivery]]:
    found: dict[str, list[Delivery]] = {m.id: [] for m in messages}
    if found:
        for delivery in Delivery.select().where(Delivery.message.in_(list(found))).order_by(Delivery.id):
            found[delivery.message_id].append(delivery)
    return found


def find(message_id: str) -> Message | None:
    """The message with this id (any case, spaces around ignored), its account loaded; None if there is none."""
    return _with_account().where(Message.id == message_id.strip().upper()).first()


def detail(message_id: str) -> Detail | None:
    """The message with this id (as ``find``) with its deliveries, attempts and events; None if there is none."""
    message = find(message_id)
    if message is None:
        return None
    attempts = (
        Attempt.select(Attempt, Delivery)
        .join(Delivery)
        .where(Delivery.message == message.id)
        .order_by(Attempt.started_at, Attempt.id)
    )
    return Detail(message, _deliveries([message])[message.id], list(attempts), events.timeline(message.id))


# The content page shows this much of a text part and of the raw source; the whole message is a download.
CONTENT_SHOWN = 256 * 1024


@dataclass
class Content:
    """What a message says: its first text/plain and text/html parts (decoded), its attachments (file
    name, type, size in bytes) and its raw source. ``raw`` is None once retention purged the body."""

    raw: bytes | None
    text: str | None = None
    html: str | None = None
    attachments: list[tuple[str, str, int]] = field(default_factory=list)
    unreadable: str = ""  # why the MIME structure could not be read (the raw source still shows)


def content(message: Message) -> Content:
    """Read a stored message's parts; a malformed one gives its raw source and the reason."""
    body = MessageBody.get_or_none(MessageBody.message == message.id)
    if body is None:
        return Content(raw=None)
    found = Content(raw=bytes(body.data))
    try:
        parsed = email.message_from_bytes(found.raw, policy=email.policy.default)
        for part in parsed.walk():
            if part.is_multipart():
                continue
            kind, disposition = part.get_content_type(), part.get_content_disposition()
            if disposition != "attachment" and kind == "text/plain" and found.text is None:
                found.text = part.get_content()
            elif disposition != "attachment" and kind == "text/html" and found.html is None:
                found.html = part.get_content()
            else:
                payload = part.get_payload(decode=True) or b""
                found.attachments.append((part.get_filename() or "(no name)", kind, len(payload)))
    except (LookupError, ValueError, TypeError, AttributeError) as exc:  # an unknown charset, broken MIME
        found.unreadable = f"{type(exc).__name__}: {exc}"
    return found

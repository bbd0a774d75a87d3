"""List sends: a message to a list address becomes one delivery per member, added by the workers in
batches (docs/campaigns-and-lists.md#list-addresses).

Intake stores the message with no deliveries and the status `expanding`; its 250 is given then. A
worker adds LIST_BATCH members at a time, in address order, each batch in one transaction that starts
from the last address the message already has a delivery for: a batch is committed whole or not at all,
so after a crash the next worker goes on from there and no member gets two deliveries or none. Two
workers on one message wait for each other (SQLite's write lock; PostgreSQL: the message row's lock).
A batch is written by the process's writer when one runs, in turn with accepted mail.
Members not subscribed, and addresses suppressed for the message, get a `suppressed` delivery (counted,
never sent) instead.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
from typing import NamedTuple

from peewee import fn

from . import clock, db, events, message_bytes, tracking
from .models import (
    EXPANDING,
    HELD,
    QUEUED,
    SUBSCRIBED,
    SUPPRESSED,
    Delivery,
    Event,
    ListMember,
    Message,
    MessageBody,
    Suppression,
)
from .models import refresh_messages as refresh
from .policy import acceptance

log = logging.getLogger(__name__)


class Batch(NamedTuple):
    """What one batch did: the deliveries to enqueue (id, domain, priority), and whether the send is done."""

    queued: list[tuple[int, str, int]]
    done: bool


def pending() -> list[str]:
    """The list sends whose members are still being added (the sweeps enqueue them)."""
    return [m for (m,) in Message.select(Message.id).where(Message.status == EXPANDING).tuples()]


def _from_domain(message_id: str) -> str:
    data = MessageBody.select(MessageBody.data).where(MessageBody.message == message_id).scalar()
    try:
        fields, _ = message_bytes.parse_header_block(bytes(data or b""))
    except message_bytes.MalformedMessage:
        return ""
    value = next((v for name, v in fields if name.lower() == "from"), "")
    addresses = acceptance.header_addresses(value)
    return acceptance.split_address(addresses[0])[1] if addresses else ""


def expand_batch(message_id: str, size: int) -> Batch:
    """Add the next ``size`` members of a list send as deliveries, in one transaction: on the process's
    writer when one runs, where the batch takes its turn among the group commits of accepted mail (another
    account's message waits at most one batch, never a run of them), else in a transaction of its own."""
    return db.write(functools.partial(_expand, message_id, size)).result()


def _expand(message_id: str, size: int) -> Batch:
    """``expand_batch``'s writes, inside its transaction."""
    query = Message.select(Message.status, Message.mailing_list, Message.priority).where(Message.id == message_id)
    if not db.is_sqlite():
        query = query.for_update()  # another worker on this message waits here
    found = query.tuples().first()
    if found is None or found[0] != EXPANDING:
        return Batch([], True)
    _, list_id, priority = found
    after = Delivery.select(fn.MAX(Delivery.rcpt)).where(Delivery.message == message_id).scalar() or ""
    members = list(
        ListMember.select(ListMember.email, ListMember.status)
        .where(ListMember.list == list_id, ListMember.email > after)
        .order_by(ListMember.email)
        .limit(size)
        .tuples()
    )
    now = clock.now()
    if not members:
        _finish(message_id, now)
        return Batch([], True)
    from_domain = _from_domain(message_id)
    held, until = _hold(message_id, now)
    waiting = HELD if held else QUEUED
    suppressed = Suppression.reasons_for([email for email, _ in members])
    rows, occurred = [], []
    for email, status in members:
        reason = None if status == SUBSCRIBED else f"member {status}"
        if reason is None:
            reason = Suppression.applying(suppressed.get(email), "broadcast", from_domain)
        if reason is not None:
            occurred.append(events.Occurred(message_id, events.SUPPRESSED, email, now, {"reason": reason}))
        elif held:
            occurred.append(events.Occurred(message_id, events.HELD, email, now, {"reason": held}))
        rows.append(
            {
                "message": message_id,
                "rcpt": email,
                "domain": acceptance.split_address(email)[1],
                "status": waiting if reason is None else SUPPRESSED,
                "priority": priority,
                "next_attempt_at": until,
                "updated_at": now,
                "last_reply": held if reason is None else f"suppressed: {reason}",
                "tracking_id": tracking.new_id() if reason is None else None,
            }
        )
    db.insert_rows(Delivery, rows)
    Message.update(rcpt_count=Message.rcpt_count + len(rows)).where(Message.id == message_id).execute()
    skipped = len(occurred)
    details = {"list": list_id, "after": after, "last": members[-1][0], "added": len(rows) - skipped}
    occurred.append(events.Occurred(message_id, events.EXPANDED, "", now, {**details, "skipped": skipped}))
    events.record(occurred)
    queued = (
        Delivery.select(Delivery.id, Delivery.domain, Delivery.priority)
        .where(
            Delivery.message == message_id,
            Delivery.rcpt > after,
            Delivery.rcpt <= members[-1][0],
            Delivery.status == QUEUED,
        )
        .tuples()
    )
    return Batch(list(queued), False)


def _hold(message_id: str, now: dt.datetime) -> tuple[str, dt.datetime]:
    """The hold a list send was accepted under (a quota's or the reputation guard's, in its `accepted`
    event) and when its deliveries may go: ("", now) when it was not held."""
    details = (
        Event.select(Event.details)
        .where(Event.message == message_id, Event.type == events.ACCEPTED)
        .order_by(Event.id)
        .limit(1)
        .scalar()
    )
    accepted = json.loads(details or "{}")
    if not accepted.get("held"):
        return "", now
    until = accepted.get("until")
    return accepted["held"], dt.datetime.fromisoformat(until) if until else now


def _finish(message_id: str, now) -> None:
    """Every member has its delivery: the message's status comes from its deliveries from now on (none:
    a list with no members, `suppressed`, nothing sent)."""
    if Delivery.select().where(Delivery.message == message_id).exists():
        Message.update(status=QUEUED).where(Message.id == message_id).execute()
        refresh({message_id})
    else:
        Message.update(status=SUPPRESSED).where(Message.id == message_id).execute()
    log.info("message %s: list send expanded", message_id)


def is_list_send(message_ids: list[str]) -> set[str]:
    """Which of these messages are list sends (their deliveries' To: names the member)."""
    if not message_ids:
        return set()
    rows = Event.select(Event.message).where(Event.message.in_(message_ids), Event.type == events.EXPANDED)
    return {m for (m,) in rows.distinct().tuples()}

"""Step 6, record: outcomes → Delivery rows, Attempts, events, Message status, suppressions, DSNs."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import NamedTuple

from ulid import ULID

from .. import clock, db, events, intake, suppressions
from ..models import (
    BOUNCED,
    DEFERRED,
    DELIVERED,
    FAILED,
    SENDING,
    Attempt,
    Claimed,
    Delivery,
    Message,
    MessageBody,
    refresh_messages,
)
from ..policy import groups
from ..policy import sending as sp
from . import dsn
from .replies import Reply
from .send import Peer

log = logging.getLogger(__name__)

DSN_PRIORITY = 2


@dataclass(frozen=True)
class Outcome:
    """What one attempt at one delivery gave."""

    delivery: Claimed
    reply: Reply
    peer: Peer
    started_at: dt.datetime
    duration_ms: int


def retry_delay(schedule: str, attempts: int) -> int:
    """Seconds to wait after the ``attempts``-th failed attempt (the last value repeats)."""
    steps = [int(x) for x in schedule.split(",") if x.strip()]
    return steps[min(attempts, len(steps)) - 1]


class SentMessage(NamedTuple):
    """What recording an attempt needs of its message."""

    id: str
    mail_from: str
    received_at: dt.datetime
    account_id: int | None


def sent_messages(message_ids: set[str]) -> dict[str, SentMessage]:
    # Plain SQL: the recorder runs on the writer thread for every commit, where building the
    # statement and model objects with peewee cost more than running the query.
    if not message_ids:
        return {}
    wanted = list(message_ids)
    cursor = db.database.execute_sql(
        f'SELECT "id", "mail_from", "received_at", "account_id" FROM "message" WHERE "id" IN ({db.marks(len(wanted))})',
        wanted,
    )
    to_time = Message.received_at.python_value
    return {row[0]: SentMessage(row[0], row[1], to_time(row[2]), row[3]) for row in cursor.fetchall()}


def _classify(outcome: Outcome, message: SentMessage, settings: dict, now: dt.datetime) -> tuple[str, dt.datetime]:
    reply = outcome.reply
    if 200 <= reply.code < 300:
        return DELIVERED, now
    if reply.permanent:
        return BOUNCED, now
    give_up_at = message.received_at + dt.timedelta(seconds=settings["GIVE_UP_AFTER"])
    if now >= give_up_at:
        return FAILED, now
    delay = dt.timedelta(seconds=retry_delay(settings["RETRY_SCHEDULE"], outcome.delivery.attempts + 1))
    return DEFERRED, min(now + delay, give_up_at)


def _finish_delivery(delivery_id: int, status: str, next_at: dt.datetime, reply: Reply, now: dt.datetime) -> bool:
    """Store an attempt's result on its Delivery row, if it is still ours (status sending)."""
    p = db.database.param
    cursor = db.database.execute_sql(
        f'UPDATE "delivery" SET "status" = {p}, "attempts" = "attempts" + 1, "next_attempt_at" = {p}, '
        f'"lease_until" = NULL, "last_code" = {p}, "last_reply" = {p}, "updated_at" = {p}, '
        f'"delivered_at" = {p} WHERE "id" = {p} AND "status" = {p}',
        (
            status,
            Delivery.next_attempt_at.db_value(next_at),
            reply.code,
            str(reply),
            Delivery.updated_at.db_value(now),
            Delivery.delivered_at.db_value(now if status == DELIVERED else None),
            delivery_id,
            SENDING,
        ),
    )
    return cursor.rowcount == 1


def record_many(jobs: list[tuple[list[Outcome], dict]]) -> list[None]:
    """Step 6, record: store the outcomes of several messages' attempts (a writer job kind: one job per message,
    run inside the writer's transaction), each with its event; a DSN for the recipients that
    bounced or failed is stored in the same transaction (and enqueued after its commit)."""
    now = clock.now()
    messages = sent_messages({outcomes[0].delivery.message_id for outcomes, _ in jobs if outcomes})
    attempts: list[dict] = []
    occurred: list[events.Occurred] = []
    for outcomes, settings in jobs:
        message = messages.get(outcomes[0].delivery.message_id) if outcomes else None
        if message is None:  # deleted meanwhile, its deliveries with it
            continue
        failed: list[dsn.FailedRecipient] = []
        for outcome in outcomes:
            d, reply = outcome.delivery, outcome.reply
            status, next_at = _classify(outcome, message, settings, now)
            changed = _finish_delivery(d.id, status, next_at, reply, now)
            attempts.append(
                {
                    "delivery": d.id,
                    "started_at": outcome.started_at,
                    "duration_ms": outcome.duration_ms,
                    "mx_host": outcome.peer.host,
                    "mx_ip": outcome.peer.ip,
                    "tls": outcome.peer.tls,
                    "code": reply.code,
                    "enhanced_code": reply.enhanced,
                    "text": reply.text,
                    "outcome": status,
                }
            )
            if sp.is_rate_limit(reply.code, reply.enhanced, reply.text):  # slow that provider down
                groups.note_rate_limit(settings, d.domain, outcome.peer.host, str(reply), now)
            if not changed:  # an admin cancelled or held it meanwhile: their decision stands
                continue
            occurred.append(
                events.Occurred(message.id, status, d.rcpt, now, {"reply": str(reply), "mx": outcome.peer.host})
            )
            if status == BOUNCED and reply.hard:
                suppressions.hard_bounce(d.rcpt, str(reply), now)
            if status in (BOUNCED, FAILED):
                failed.append(dsn.FailedRecipient(d.rcpt, "failed", reply, outcome.peer.host, now))
        if failed and message.mail_from:
            queue_dsn(message, failed, settings, now)
    db.insert_rows(Attempt, attempts)
    events.record(occurred)
    refresh_messages(set(messages))
    return [None] * len(jobs)


def queue_dsn(message: SentMessage, failed: list[dsn.FailedRecipient], settings: dict, now: dt.datetime) -> str:
    """Store the DSN as a new message from the null sender (so it can never cause another)."""
    body = bytes(MessageBody.get_by_id(message.id).data)  # a memoryview on PostgreSQL
    end = body.find(b"\r\n\r\n")
    headers = body[: end + 2] if end >= 0 else body
    dsn_id = str(ULID())
    data = dsn.build(
        hostname=settings["HOSTNAME"],
        dsn_id=dsn_id,
        original_id=message.id,
        envelope_sender=message.mail_from,
        received_at=message.received_at,
        original_headers=headers,
        recipients=failed,
        now=now,
    )
    intake.store(
        intake.Incoming(
            id=dsn_id,
            mail_from="",
            rcpts=[message.mail_from],
            data=data,
            priority=DSN_PRIORITY,
            via="dsn",
            client_ip="127.0.0.1",
            client_helo=settings["HOSTNAME"],
            summary={
                "subject": "Undelivered Mail Returned to Sender",
                "from_header": f"MAILER-DAEMON@{settings['HOSTNAME']}",
                "message_id_header": f"<{dsn_id}@{settings['HOSTNAME']}>",
            },
        )
    )
    log.info("message %s: DSN %s queued to %s for %d recipient(s)", message.id, dsn_id, message.mail_from, len(failed))
    return dsn_id

"""SMTP accounts and the mail they send: messages, bodies, deliveries and their attempts."""

from __future__ import annotations

import datetime as dt
import threading
from typing import NamedTuple

from peewee import (
    AutoField,
    BlobField,
    BooleanField,
    CharField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    TextField,
)

from .. import clock
from ..db import database, marks
from .base import (
    BOUNCED,
    CANCELLED,
    DEFERRED,
    DELIVERED,
    EXPANDING,
    FAILED,
    HELD,
    PARTIAL,
    QUEUED,
    SENDING,
    SUPPRESSED,
    BaseModel,
)


class SmtpAccount(BaseModel):
    id = AutoField()
    name = CharField()
    username = CharField(unique=True, null=True)  # "<id>.<slug>.smtp", set right after insert
    password_hash = CharField(default="")  # appliance/credentials.py
    active = BooleanField(default=True)
    # Raised by a password reset and by a disable: sessions signed in under an older version are
    # refused at their next MAIL FROM.
    credential_version = IntegerField(default=0)
    priority = IntegerField(default=3)  # 1 very high … 5 very low
    note = TextField(default="")
    ip_rules = TextField(default="")  # CIDRs, one per line
    ip_only = BooleanField(default=False)  # authenticates by source network alone
    created_at = DateTimeField(default=clock.now)
    last_login_at = DateTimeField(null=True)
    last_login_ip = CharField(null=True)
    last_failure_at = DateTimeField(null=True)
    last_failure_ip = CharField(null=True)
    last_failure_reason = CharField(null=True)
    # Sender authorization: both lists empty = every verified sender is allowed.
    authorized_domains = TextField(default="")  # lower-cased, one per line
    authorized_senders = TextField(default="")  # lower-cased addresses, one per line
    sender_mode = CharField(default="block")  # block | alert: what an unauthorized sender gets
    # The stream of its mail unless X-Stream says otherwise (policy/acceptance.py, STREAMS): transactional
    # (orders, password resets) or broadcast (newsletters; an unsubscribe stops only these).
    stream = CharField(default="transactional")
    # Open and click tracking; None: the stream's default (on for broadcast, off for transactional).
    track_opens = BooleanField(null=True)
    track_clicks = BooleanField(null=True)

    @property
    def networks(self) -> list[str]:
        return [line for line in self.ip_rules.split() if line]


class Message(BaseModel):
    id = CharField(primary_key=True, max_length=26)  # ULID
    account = ForeignKeyField(SmtpAccount, null=True, backref="messages", on_delete="SET NULL")
    direction = CharField(default="outbound")  # outbound | inbound
    status = CharField(default=QUEUED, index=True)
    mail_from = CharField(default="")
    rcpt_count = IntegerField(default=0)
    from_header = CharField(default="")
    subject = CharField(default="")
    message_id_header = CharField(default="")
    size = IntegerField(default=0)
    priority = IntegerField(default=3)
    client_ip = CharField(default="")
    client_helo = CharField(default="")
    tls = CharField(default="")
    received_at = DateTimeField(default=clock.now, index=True)
    stream = CharField(default="transactional")
    track_opens = BooleanField(default=False)
    track_clicks = BooleanField(default=False)
    # The id of the Campaign it is filed under (appliance/campaigns.py); None: not an account's mail.
    # A plain column: campaigns are archived, never deleted.
    campaign = CharField(null=True)
    # The id of the MailingList its figures show under (the same: lists are not deleted while mail names them).
    mailing_list = CharField(null=True)

    class Meta:
        # The message log's keyset pages under each filter (migrations/0003_message_log_indexes.py).
        indexes = (
            (("received_at", "id"), False),
            (("account", "received_at", "id"), False),
            (("status", "received_at", "id"), False),
            (("stream", "received_at", "id"), False),
            (("mail_from", "received_at"), False),
            (("message_id_header",), False),
        )


class MessageBody(BaseModel):
    message = ForeignKeyField(Message, primary_key=True, backref="body_row", on_delete="CASCADE")
    data = BlobField()


class Delivery(BaseModel):
    id = AutoField()
    # Indexed with rcpt and with status (Meta), which serve lookups by message alone too.
    message = ForeignKeyField(Message, backref="deliveries", on_delete="CASCADE", index=False)
    rcpt = CharField(index=True)
    domain = CharField(index=True)
    status = CharField(default=QUEUED)
    priority = IntegerField(default=3)
    attempts = IntegerField(default=0)
    next_attempt_at = DateTimeField(default=clock.now)
    lease_until = DateTimeField(null=True)
    last_code = IntegerField(null=True)
    last_reply = TextField(default="")
    updated_at = DateTimeField(default=clock.now)
    delivered_at = DateTimeField(null=True)
    # Random, for a tracked or broadcast message only: its open, click and unsubscribe links name
    # the recipient by this (appliance/tracking.py), never by a database id.
    tracking_id = CharField(null=True, unique=True)

    class Meta:
        indexes = (
            (("status", "priority", "next_attempt_at"), False),
            (("message", "rcpt"), False),  # a list send's expansion (appliance/fanout.py)
            (("message", "status"), False),  # the statuses of a message's deliveries (refresh_messages)
        )


def message_status(statuses: list[str]) -> str:
    """Derive a Message's status from its deliveries' statuses.

    While anything is pending: `queued` if a delivery is queued or being sent, else `deferred`,
    else `held`. Once all are final: `delivered` when all were delivered, `partial` when some
    were, else the most telling failure: `bounced`, `failed`, `cancelled`, then `suppressed`.
    """
    present = set(statuses)
    for pending, shown in ((QUEUED, QUEUED), (SENDING, QUEUED), (DEFERRED, DEFERRED), (HELD, HELD)):
        if pending in present:
            return shown
    if present == {DELIVERED}:
        return DELIVERED
    if DELIVERED in present:
        return PARTIAL
    for final in (BOUNCED, FAILED, CANCELLED, SUPPRESSED):
        if final in present:
            return final
    return QUEUED if not present else sorted(present)[0]


def refresh_messages(message_ids: set[str]) -> None:
    """Recompute the status of these messages from their deliveries (inside a transaction).

    Plain SQL: the delivery recorder runs this for every commit, on the writer thread."""
    if not message_ids:
        return
    wanted = list(message_ids)
    by_message: dict[str, list[str]] = {m: [] for m in wanted}
    # Each message's distinct statuses, one probe of the (message_id, status) index per status, not a
    # read of every delivery: a list send's message has one per member.
    cursor = database.execute_sql(
        'WITH RECURSIVE "found" ("message_id", "status") AS ('
        ' SELECT "m"."id", (SELECT MIN("d"."status") FROM "delivery" AS "d" WHERE "d"."message_id" = "m"."id")'
        f' FROM "message" AS "m" WHERE "m"."id" IN ({marks(len(wanted))})'
        " UNION ALL"
        ' SELECT "f"."message_id", (SELECT MIN("d"."status") FROM "delivery" AS "d"'
        ' WHERE "d"."message_id" = "f"."message_id" AND "d"."status" > "f"."status")'
        ' FROM "found" AS "f" WHERE "f"."status" IS NOT NULL'
        ') SELECT "message_id", "status" FROM "found" WHERE "status" IS NOT NULL',
        wanted,
    )
    for message_id, status in cursor.fetchall():
        by_message[message_id].append(status)
    by_status: dict[str, list[str]] = {}
    for message_id, statuses in by_message.items():
        if statuses:
            by_status.setdefault(message_status(statuses), []).append(message_id)
    p = database.param
    for status, ids in by_status.items():
        database.execute_sql(
            # A list send still being expanded keeps its status until its last member has a delivery.
            f'UPDATE "message" SET "status" = {p} WHERE "id" IN ({marks(len(ids))}) AND "direction" = {p} '
            f'AND "status" <> {p}',
            (status, *ids, "outbound", EXPANDING),
        )


class Sent(NamedTuple):
    """What the reactions to an event read of its message: events name only the message id."""

    account: str  # the SMTP account's username; "" for the appliance's own mail (or a deleted account)
    stream: str
    received_at: dt.datetime


# Recently read messages' Sent (they never change once stored): the log line and the metrics of one
# commit read the database once, and a delivery's outcome usually finds its message here.
_sent_cache: dict[str, Sent] = {}
_SENT_CACHE_SIZE = 4096
_sent_lock = threading.Lock()


def sent_facts(message_ids: set[str]) -> dict[str, Sent]:
    """Each of these messages' account, stream and reception time (the ones still stored)."""
    with _sent_lock:
        found = {m: _sent_cache[m] for m in message_ids if m in _sent_cache}
    missing = [m for m in message_ids if m not in found]
    if not missing:
        return found
    # Plain SQL: this runs after every commit of the writer thread.
    cursor = database.execute_sql(
        f'SELECT m."id", a."username", m."stream", m."received_at" FROM "message" m '
        f'LEFT JOIN "smtp_account" a ON a."id" = m."account_id" WHERE m."id" IN ({marks(len(missing))})',
        missing,
    )
    to_time = Message.received_at.python_value
    read = {row[0]: Sent(row[1] or "", row[2], to_time(row[3])) for row in cursor.fetchall()}
    with _sent_lock:
        _sent_cache.update(read)
        while len(_sent_cache) > _SENT_CACHE_SIZE:
            del _sent_cache[next(iter(_sent_cache))]
    return found | read


class Claimed(NamedTuple):
    """A Delivery row a worker has claimed (status `sending`): the columns delivery reads."""

    id: int
    message_id: str
    rcpt: str
    domain: str
    priority: int
    attempts: int
    next_attempt_at: dt.datetime


class Attempt(BaseModel):
    id = AutoField()
    delivery = ForeignKeyField(Delivery, backref="attempt_rows", on_delete="CASCADE")
    started_at = DateTimeField(default=clock.now)
    duration_ms = IntegerField(default=0)
    mx_host = CharField(default="")
    mx_ip = CharField(default="")
    tls = CharField(default="")
    code = IntegerField(null=True)
    enhanced_code = CharField(default="")
    text = TextField(default="")
    outcome = CharField(default="")  # delivered | deferred | bounced | failed

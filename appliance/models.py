"""The nouns of the appliance (DESIGN §3) and their query helpers."""

from __future__ import annotations

import datetime as dt
import json
import threading
from typing import NamedTuple

from peewee import (
    AutoField,
    BlobField,
    BooleanField,
    CharField,
    DateField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)

from . import clock
from .db import database, marks

# Delivery statuses. A Message's status is derived from its deliveries.
QUEUED, SENDING, DEFERRED, DELIVERED = "queued", "sending", "deferred", "delivered"
BOUNCED, FAILED, SUPPRESSED, HELD, CANCELLED = "bounced", "failed", "suppressed", "held", "cancelled"
RECEIVED = "received"  # inbound mail for a local domain: stored, not relayed
DELIVERY_STATUSES = (QUEUED, SENDING, DEFERRED, DELIVERED, BOUNCED, FAILED, SUPPRESSED, HELD, CANCELLED)
PENDING_STATUSES = (QUEUED, SENDING, DEFERRED, HELD)
PARTIAL = "partial"  # Message status: finished, some recipients delivered and some not


class BaseModel(Model):
    class Meta:
        database = database
        legacy_table_names = False


class AdminUser(BaseModel):
    id = AutoField()
    email = CharField(unique=True)
    password_hash = CharField()
    role = CharField(default="admin")  # admin | viewer
    created_at = DateTimeField(default=clock.now)
    last_login_at = DateTimeField(null=True)
    active = BooleanField(default=True)  # a disabled user cannot sign in
    invited_at = DateTimeField(null=True)  # the newest invitation link; older ones stop working
    totp_secret = CharField(default="")  # base32 TOTP secret; empty: no second factor
    totp_last_step = IntegerField(default=0)  # the newest TOTP time step used: each code works once


class RecoveryCode(BaseModel):
    """A one-time code that stands in for the TOTP code (its SHA-256: the code has 80 random bits)."""

    id = AutoField()
    admin = ForeignKeyField(AdminUser, backref="recovery_codes", on_delete="CASCADE")
    code_hash = CharField()
    used_at = DateTimeField(null=True)


class WebSession(BaseModel):
    """A dashboard session: the cookie carries a random id, this row (keyed by its SHA-256) the rest."""

    id = CharField(primary_key=True, max_length=64)
    admin = ForeignKeyField(AdminUser, null=True, backref="sessions", on_delete="CASCADE")
    data = TextField(default="")
    ip = CharField(default="")
    created_at = DateTimeField(default=clock.now)
    last_seen_at = DateTimeField(default=clock.now)
    expires_at = DateTimeField(index=True)


class AuditEntry(BaseModel):
    """Who changed what in the dashboard or with the CLI (appliance.audit.record writes these)."""

    id = AutoField()
    at = DateTimeField(default=clock.now)
    actor = CharField()  # the dashboard user's e-mail, "cli" or "system"
    ip = CharField(default="")
    action = CharField()  # noun.verb: "account.create", "user.disable", …
    subject = CharField(default="")  # what it was done to, in words: "account 3.shop.smtp"
    detail = TextField(default="")


class DashboardSetting(BaseModel):
    """A choice an admin makes in the dashboard (not a start-up setting of appliance.config)."""

    key = CharField(primary_key=True)
    value = TextField(default="")


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
    message = ForeignKeyField(Message, backref="deliveries", on_delete="CASCADE")
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
        indexes = ((("status", "priority", "next_attempt_at"), False),)


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
    cursor = database.execute_sql(
        f'SELECT "message_id", "status" FROM "delivery" WHERE "message_id" IN ({marks(len(wanted))})', wanted
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
            f'UPDATE "message" SET "status" = {p} WHERE "id" IN ({marks(len(ids))}) AND "direction" = {p}',
            (status, *ids, "outbound"),
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


class Suppression(BaseModel):
    """An address not to send to: for every stream (stream and domain ""), or only for one stream of
    mail from one sending domain (an unsubscribe: stream "broadcast", the From: domain)."""

    id = AutoField()
    address = CharField()  # lower-cased
    reason = TextField(default="")
    source = CharField(default="manual")  # manual | bounce | complaint | unsubscribe
    created_at = DateTimeField(default=clock.now)
    stream = CharField(default="")  # "" every stream, else the one it is suppressed for
    domain = CharField(default="")  # "" every sending domain, else the From: domain it applies to

    class Meta:
        indexes = ((("address", "stream", "domain"), True),)

    @classmethod
    def every_stream(cls, address: str):
        """The condition that selects ``address``'s suppression of every stream."""
        return (cls.address == address) & (cls.stream == "") & (cls.domain == "")

    @classmethod
    def reasons_for(cls, addresses: list[str]) -> dict[str, list[tuple[str, str, str]]]:
        """Map each suppressed address (lower-cased) among ``addresses`` to its suppressions:
        (stream, domain, reason) each; ``applying`` tells which one stops a given message."""
        wanted = list({a.lower() for a in addresses})
        if not wanted:
            return {}
        # Plain SQL: intake asks this for every commit, on the writer thread.
        cursor = database.execute_sql(
            f'SELECT "address", "stream", "domain", "reason" FROM "suppression" '
            f'WHERE "address" IN ({marks(len(wanted))})',
            wanted,
        )
        found: dict[str, list[tuple[str, str, str]]] = {}
        for address, stream, domain, reason in cursor.fetchall():
            found.setdefault(address, []).append((stream, domain, reason))
        return found

    @staticmethod
    def applying(found: list[tuple[str, str, str]] | None, stream: str, domain: str) -> str | None:
        """The reason of the first of an address's suppressions that stops a message of ``stream``
        from ``domain`` (one of every stream always does), or None."""
        for scope, scope_domain, reason in found or ():
            if not scope or (scope == stream and scope_domain == domain):
                return reason
        return None


class Sender(BaseModel):
    """An address that may appear as sender once verified (by its link, or by an admin)."""

    id = AutoField()
    email = CharField(unique=True)  # lower-cased
    created_at = DateTimeField(default=clock.now)
    verified_at = DateTimeField(null=True)
    verified_by = CharField(default="")  # "link" | "admin"
    link_sent_at = DateTimeField(null=True)

    @property
    def verified(self) -> bool:
        return self.verified_at is not None


class Domain(BaseModel):
    """A sending domain with its DKIM keys and the last DNS check of each record."""

    id = AutoField()
    name = CharField(unique=True)  # lower-cased, no trailing dot
    selector = CharField()
    rsa_key = TextField()  # PEM (PKCS#8) private key, RSA-2048
    ed25519_key = TextField()  # base64 of the 32-byte Ed25519 seed (dkimpy's format)
    # A rotation's new keys wait here until their DKIM record is published (then they replace the above).
    next_selector = CharField(null=True)
    next_rsa_key = TextField(default="")
    next_ed25519_key = TextField(default="")
    verified = BooleanField(default=False)
    record_status = TextField(default="{}")  # JSON: record key → {"status", "error"}
    created_at = DateTimeField(default=clock.now)
    last_checked_at = DateTimeField(null=True)

    def statuses(self) -> dict[str, dict[str, str]]:
        """Return the last DNS check's result per record key: {"status", "error"}."""
        return self.parse_statuses(self.record_status)

    @staticmethod
    def parse_statuses(record_status: str | None) -> dict[str, dict[str, str]]:
        """Read a stored ``record_status`` (for callers that select the column without a model)."""
        return json.loads(record_status or "{}")

    @staticmethod
    def names_covering(address_domain: str) -> list[str]:
        """Return the domain names that could cover ``address_domain``: itself, then its parents."""
        labels = address_domain.lower().rstrip(".").split(".")
        return [".".join(labels[i:]) for i in range(len(labels) - 1)]

    @classmethod
    def verified_for(cls, address_domain: str) -> Domain | None:
        """Return the verified domain that ``address_domain`` is, or is a subdomain of (closest first)."""
        candidates = cls.names_covering(address_domain)
        if not candidates:
            return None
        rows = {d.name: d for d in cls.select().where(cls.name.in_(candidates) & cls.verified)}
        return next((rows[c] for c in candidates if c in rows), None)


INFO, WARNING, CRITICAL = "info", "warning", "critical"  # alert severities


class Alert(BaseModel):
    """Something the admin should know; repeats of an open alert fold into its count."""

    id = AutoField()
    kind = CharField()  # e.g. "unauthorized-sender-blocked", "dns-record-broken"
    severity = CharField(default="warning")  # info | warning | critical
    subject = CharField()  # what it is about: "account 1.shop.smtp", "domain example.com"
    text = TextField(default="")  # the latest occurrence in plain words
    first_seen = DateTimeField(default=clock.now)
    last_seen = DateTimeField(default=clock.now)
    count = IntegerField(default=1)
    acknowledged = BooleanField(default=False)
    acknowledged_at = DateTimeField(null=True)
    acknowledged_by = CharField(default="")

    class Meta:
        indexes = ((("kind", "subject", "acknowledged"), False),)


# -- sending policy: the rules themselves are in appliance/policy/sending.py ----------------------
class AccountQuota(BaseModel):
    """One quota of an SMTP account: recipients per minute, hour, day or month, and what happens over it."""

    id = AutoField()
    account = ForeignKeyField(SmtpAccount, backref="quotas", on_delete="CASCADE")
    period = CharField()  # minute | hour | day | month
    limit = IntegerField()
    action = CharField(default="defer")  # defer | hold | reject

    class Meta:
        indexes = ((("account", "period"), True),)


class ProviderGroup(BaseModel):
    """Destinations of one provider (by recipient domain or MX host name), their caps and throttle state."""

    id = AutoField()
    name = CharField(unique=True)
    position = IntegerField(default=0)  # matching order
    domain_patterns = TextField(default="")  # one fnmatch pattern per line
    mx_patterns = TextField(default="")
    hourly_new = IntegerField(null=True, column_name="hourly_cap")  # per hour from a new IP; None: no cap
    hourly_warm = IntegerField(null=True)  # per hour once warmed up
    daily_cap = IntegerField(null=True)  # per UTC day
    session_cap = IntegerField(null=True)
    stage = CharField(default="auto")  # auto (follows the warm-up plan) | new | warm
    throttled_until = DateTimeField(null=True)  # slowed down after a remote rate-limit reply
    throttle_strikes = IntegerField(default=0)
    throttle_reply = TextField(default="")
    throttled_at = DateTimeField(null=True)


class SendCount(BaseModel):
    """Deliveries let through per provider group and clock hour: what pacing and warm-up count."""

    id = AutoField()
    provider = CharField()
    hour = DateTimeField(index=True)
    count = IntegerField(default=0)

    class Meta:
        indexes = ((("provider", "hour"), True),)


class WarmupPlan(BaseModel):
    """The IP warm-up (one row): daily caps by day of the plan, counted from its start date."""

    id = AutoField()
    enabled = BooleanField(default=False)
    start_date = DateField(null=True)
    steps = TextField(default="")  # "1:1000,4:5000,…,21:" (policy/sending.py, parse_plan)


class AccountReputation(BaseModel):
    """The reputation guard's last verdict on an account's bounce and complaint rates."""

    account = ForeignKeyField(SmtpAccount, primary_key=True, backref="reputation_rows", on_delete="CASCADE")
    state = CharField(default="ok")  # ok | warn | hold
    reason = CharField(default="")
    sent = IntegerField(default=0)
    bounced = IntegerField(default=0)
    complaints = IntegerField(default=0)
    checked_at = DateTimeField(default=clock.now)


class Event(BaseModel):
    """One outcome of a message for one recipient (or for the whole message: recipient ""),
    written in the transaction of the outcome itself (appliance/events.py)."""

    id = AutoField()
    message = ForeignKeyField(Message, backref="events", on_delete="CASCADE")
    recipient = CharField(default="")
    type = CharField()  # accepted | delivered | deferred | bounced | failed | suppressed | held | …
    at = DateTimeField(default=clock.now)
    details = TextField(default="{}")  # JSON: the reply, the MX, the reason, who acted

    class Meta:
        indexes = (
            (("message", "at", "id"), False),  # a message's timeline
            (("type", "at"), False),  # outcomes of one kind over time (stats, alerts, webhooks)
        )


class EventCount(BaseModel):
    """The analytics' hourly roll-up (appliance/events.py keeps it in the transaction of each Event):
    how many ``metric`` events happened in ``hour`` for the outbound messages of one account (0: none)
    and stream received in ``received``, to recipients of one provider group. No foreign key: the counts
    outlive the messages (retention)."""

    id = AutoField()
    received = DateTimeField()  # the hour the messages were received in (the report's range)
    hour = DateTimeField()  # the hour the events happened in (the charts); ``received`` for sent
    account = IntegerField()
    stream = CharField()
    provider = CharField()  # the provider group of the recipient's domain when the event was recorded
    metric = CharField()  # sent | delivered | bounced | complained | opened | clicked | unsubscribed | machine_…
    count = IntegerField(default=0)
    uniques = IntegerField(default=0)  # opened, clicked: the deliveries' first human open or click

    class Meta:
        indexes = ((("received", "account", "stream", "provider", "metric", "hour"), True),)


MODELS = (
    AdminUser,
    SmtpAccount,
    Message,
    MessageBody,
    Delivery,
    Attempt,
    Suppression,
    Sender,
    Domain,
    Alert,
    AccountQuota,
    ProviderGroup,
    SendCount,
    WarmupPlan,
    AccountReputation,
    Event,
    EventCount,
    RecoveryCode,
    WebSession,
    AuditEntry,
    DashboardSetting,
)

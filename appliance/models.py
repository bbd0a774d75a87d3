"""The nouns of the appliance (DESIGN §3) and their query helpers."""

from __future__ import annotations

from peewee import (
    AutoField,
    BlobField,
    BooleanField,
    CharField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)

from . import clock
from .db import database

# Delivery statuses (issue: delivery). A Message's status is derived from its deliveries.
QUEUED, SENDING, DEFERRED, DELIVERED = "queued", "sending", "deferred", "delivered"
BOUNCED, FAILED, SUPPRESSED, HELD, CANCELLED = "bounced", "failed", "suppressed", "held", "cancelled"
RECEIVED = "received"  # inbound mail for a local domain: stored, not relayed
DELIVERY_STATUSES = (QUEUED, SENDING, DEFERRED, DELIVERED, BOUNCED, FAILED, SUPPRESSED, HELD, CANCELLED)
PENDING_STATUSES = (QUEUED, SENDING, DEFERRED, HELD)


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


class SmtpAccount(BaseModel):
    id = AutoField()
    name = CharField()
    username = CharField(unique=True, null=True)  # "<id>.<slug>.smtp", set right after insert
    password_hash = CharField(default="")
    active = BooleanField(default=True)
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


class MessageBody(BaseModel):
    message = ForeignKeyField(Message, primary_key=True, backref="body_row", on_delete="CASCADE")
    data = BlobField()


class Delivery(BaseModel):
    id = AutoField()
    message = ForeignKeyField(Message, backref="deliveries", on_delete="CASCADE")
    rcpt = CharField()
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

    class Meta:
        indexes = ((("status", "priority", "next_attempt_at"), False),)


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
    id = AutoField()
    address = CharField(unique=True)  # lower-cased
    reason = TextField(default="")
    source = CharField(default="manual")  # manual | bounce
    created_at = DateTimeField(default=clock.now)

    @classmethod
    def reasons_for(cls, addresses: list[str]) -> dict[str, str]:
        """Map each suppressed address (lower-cased) among ``addresses`` to its reason."""
        wanted = list({a.lower() for a in addresses})
        if not wanted:
            return {}
        rows = cls.select(cls.address, cls.reason).where(cls.address.in_(wanted))
        return {row.address: row.reason for row in rows}


MODELS = (AdminUser, SmtpAccount, Message, MessageBody, Delivery, Attempt, Suppression)

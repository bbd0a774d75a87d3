"""Webhooks: the endpoints apps gave, each event waiting to be POSTed to one of them, and every call made."""

from __future__ import annotations

from peewee import (
    AutoField,
    BooleanField,
    CharField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    TextField,
)

from .. import clock
from .base import BaseModel
from .mail import Message

# WebhookDelivery statuses: waiting for its (next) call, leased by a worker, done, given up.
PENDING, SENDING, DELIVERED, FAILED = "pending", "sending", "delivered", "failed"


class Webhook(BaseModel):
    """An endpoint: where events go, which of them, for which accounts, signed with which secret."""

    id = AutoField()
    url = TextField()
    event_types = TextField(default="")  # the event types it wants, space separated; "" every type
    account_ids = TextField(default="")  # the SmtpAccount ids whose mail it hears of, space separated; "" all
    secret = CharField()  # "whsec_" + base64: shown once at creation, kept to sign every call
    active = BooleanField(default=True)
    created_at = DateTimeField(default=clock.now)
    failing_since = DateTimeField(null=True)  # the first failed call since the last one that succeeded
    last_success_at = DateTimeField(null=True)
    disabled_reason = TextField(default="")  # why the appliance turned it off, if it did


class WebhookDelivery(BaseModel):
    """One event for one endpoint: the signed body it gets, and where its calls stand. The events of
    one message reach an endpoint in the order these rows were written (appliance/webhooks/send.py)."""

    id = AutoField()
    webhook = ForeignKeyField(Webhook, backref="deliveries", on_delete="CASCADE")
    message = ForeignKeyField(Message, null=True, on_delete="CASCADE")  # None: a test event
    event_type = CharField()
    msg_id = CharField(unique=True)  # the `webhook-id` header: "msg_" + ULID, the same on every retry
    payload = TextField()  # the JSON body, fixed when the event was recorded
    status = CharField(default=PENDING)
    attempts = IntegerField(default=0)  # calls since it was recorded or replayed (the retry schedule's step)
    next_attempt_at = DateTimeField(default=clock.now)
    lease_until = DateTimeField(null=True)  # `sending`: a worker owns it until then
    created_at = DateTimeField(default=clock.now)
    finished_at = DateTimeField(null=True)

    class Meta:
        indexes = (
            (("webhook", "message", "id"), False),  # the earlier events of a message for an endpoint
            (("status", "next_attempt_at"), False),  # the sweep's due rows
        )


class WebhookCall(BaseModel):
    """One HTTP call of a delivery: when, how long, the status code (None: no answer) and a short excerpt."""

    id = AutoField()
    delivery = ForeignKeyField(WebhookDelivery, backref="calls", on_delete="CASCADE")
    webhook = ForeignKeyField(Webhook, backref="calls", on_delete="CASCADE")
    at = DateTimeField(default=clock.now)
    status_code = IntegerField(null=True)
    duration_ms = IntegerField(default=0)
    ok = BooleanField(default=False)
    excerpt = TextField(default="")  # the first bytes of the answer, or why there was none

    class Meta:
        indexes = ((("webhook", "at"), False),)

"""What happened: events, their hourly roll-ups, and the alerts raised for the admins."""

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
        indexes = (
            (("received", "account", "stream", "provider", "metric", "hour"), True),
            (("hour", "metric"), False),  # the last 24 hours' chart of a long range
        )


class EventDay(BaseModel):
    """EventCount by day: the same counts with ``received`` and ``day`` (when the events happened) at
    midnight UTC, kept beside it in the same transaction. A report of whole days reads these: their
    number grows with the days, accounts, streams and providers, not with the messages."""

    id = AutoField()
    received = DateTimeField()  # the day the messages were received on (midnight UTC)
    day = DateTimeField()  # the day the events happened on (midnight UTC); ``received`` for sent
    account = IntegerField()
    stream = CharField()
    provider = CharField()
    metric = CharField()
    count = IntegerField(default=0)
    uniques = IntegerField(default=0)

    class Meta:
        indexes = ((("received", "account", "stream", "provider", "metric", "day"), True),)


class LinkDay(BaseModel):
    """The human clicks of each link by the day its messages were received on (the analytics' top
    links), kept in the transaction of each click. ``link`` is the URL's SHA-256 (an index entry of
    bounded size; a URL may be long), ``url`` the URL itself."""

    id = AutoField()
    received = DateTimeField()  # midnight UTC
    account = IntegerField()
    stream = CharField()
    link = CharField(max_length=64)
    url = TextField()
    count = IntegerField(default=0)  # human clicks
    uniques = IntegerField(default=0)  # recipients' first human click of this link in a message

    class Meta:
        indexes = ((("received", "account", "stream", "link"), True),)

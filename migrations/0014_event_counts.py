"""The analytics' hourly roll-up (EventCount, docs/analytics.md), counted from the messages,
deliveries and events already stored (events.rebuild_rollups, the same counting as new events get)."""

from peewee import AutoField, CharField, DateTimeField, IntegerField, Model

from appliance import events
from appliance.models import Delivery, Event, EventCount, Message


class _EventCount(Model):
    """The table as this migration creates it (later models may differ)."""

    id = AutoField()
    received = DateTimeField()
    hour = DateTimeField()
    account = IntegerField()
    stream = CharField()
    domain = CharField()
    metric = CharField()
    count = IntegerField(default=0)
    uniques = IntegerField(default=0)

    class Meta:
        table_name = "event_count"
        indexes = ((("received", "account", "stream", "domain", "metric", "hour"), True),)


def up(migrator, db):
    with db.bind_ctx([_EventCount]):
        db.create_tables([_EventCount])
    with db.atomic(), db.bind_ctx([Message, Delivery, Event, EventCount]):
        events.rebuild_rollups()

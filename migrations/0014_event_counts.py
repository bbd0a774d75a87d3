"""The analytics' hourly roll-up (EventCount, docs/analytics.md), counted from the messages,
deliveries and events already stored (events.rebuild_rollups, the same counting as new events get)."""

from peewee import AutoField, CharField, DateTimeField, IntegerField, Model

from appliance import analytics, events
from appliance.models import Delivery, Event, EventCount, Message
from appliance.policy import sending


class _EventCount(Model):
    """The table as this migration creates it (later models may differ)."""

    id = AutoField()
    received = DateTimeField()
    hour = DateTimeField()
    account = IntegerField()
    stream = CharField()
    provider = CharField()
    metric = CharField()
    count = IntegerField(default=0)
    uniques = IntegerField(default=0)

    class Meta:
        table_name = "event_count"
        indexes = ((("received", "account", "stream", "provider", "metric", "hour"), True),)


def up(migrator, db):
    with db.bind_ctx([_EventCount]):
        db.create_tables([_EventCount])
    # The provider groups as they are now (their defaults on a database that has none yet).
    found = [
        sending.Group(name, tuple(patterns.split()))
        for name, patterns in db.execute_sql(
            'SELECT "name", "domain_patterns" FROM "provider_group" ORDER BY "position", "id"'
        ).fetchall()
    ]
    with db.atomic(), db.bind_ctx([Message, Delivery, Event, EventCount]):
        events.rebuild_rollups(analytics.provider_names(found or list(sending.DEFAULT_GROUPS)), days=False)

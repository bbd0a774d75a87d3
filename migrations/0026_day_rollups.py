"""The analytics' day roll-ups (docs/analytics.md): EventDay, EventCount added up by day, and LinkDay,
the human clicks of each link; and an index of EventCount by the hour its events happened (the last
24 hours' chart). EventDay is filled from EventCount, so it keeps the counts of messages purged
since; LinkDay from the clicks still stored (the top links of purged messages were gone already)."""

from peewee import AutoField, CharField, DateTimeField, IntegerField, Model, TextField
from playhouse.migrate import migrate

from appliance import events
from appliance.models import Event, EventCount, EventDay, LinkDay, Message


class _EventDay(Model):
    """The tables as this migration creates them (later models may differ)."""

    id = AutoField()
    received = DateTimeField()
    day = DateTimeField()
    account = IntegerField()
    stream = CharField()
    provider = CharField()
    metric = CharField()
    count = IntegerField(default=0)
    uniques = IntegerField(default=0)

    class Meta:
        table_name = "event_day"
        indexes = ((("received", "account", "stream", "provider", "metric", "day"), True),)


class _LinkDay(Model):
    id = AutoField()
    received = DateTimeField()
    account = IntegerField()
    stream = CharField()
    link = CharField(max_length=64)
    url = TextField()
    count = IntegerField(default=0)
    uniques = IntegerField(default=0)

    class Meta:
        table_name = "link_day"
        indexes = ((("received", "account", "stream", "link"), True),)


def up(migrator, db):
    with db.bind_ctx([_EventDay, _LinkDay]):
        db.create_tables([_EventDay, _LinkDay])
    migrate(migrator.add_index("event_count", ("hour", "metric"), False))
    with db.atomic(), db.bind_ctx([Message, Event, EventCount, EventDay, LinkDay]):
        events.rebuild_day_rollups()

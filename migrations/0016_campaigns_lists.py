"""Campaigns (docs/campaigns-and-lists.md): the campaign table, each message's campaign, and the hourly
roll-up of their figures. Mail stored before has no campaign: nothing to count anew."""

from peewee import AutoField, BooleanField, CharField, DateTimeField, ForeignKeyField, IntegerField, Model
from playhouse.migrate import migrate


class _SmtpAccount(Model):
    id = AutoField()

    class Meta:
        table_name = "smtp_account"


class _Campaign(Model):
    """The tables as this migration creates them (later models may differ)."""

    id = CharField(primary_key=True, max_length=36)
    name = CharField()
    subject = CharField(null=True, index=True)
    default_for = ForeignKeyField(
        _SmtpAccount, null=True, unique=True, on_delete="SET NULL", column_name="default_for_id"
    )
    archived = BooleanField(default=False)
    created_at = DateTimeField()

    class Meta:
        table_name = "campaign"


class _GroupedCount(Model):
    id = AutoField()
    kind = CharField()
    group = CharField()
    metric = CharField()
    hour = DateTimeField()
    count = IntegerField(default=0)
    uniques = IntegerField(default=0)

    class Meta:
        table_name = "grouped_count"
        indexes = ((("kind", "group", "metric", "hour"), True),)


def up(migrator, db):
    with db.bind_ctx([_SmtpAccount, _Campaign, _GroupedCount]):
        db.create_tables([_Campaign, _GroupedCount])
    migrate(migrator.add_column("message", "campaign", CharField(null=True)))

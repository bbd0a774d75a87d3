"""Sending policy: account quotas, provider groups, send counts, warm-up plan, reputation."""

import datetime

from peewee import (
    AutoField,
    BooleanField,
    CharField,
    DateField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)


def up(migrator, db):
    now = datetime.datetime.utcnow

    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class SmtpAccount(Base):
        id = AutoField()

    class AccountQuota(Base):
        id = AutoField()
        account = ForeignKeyField(SmtpAccount, on_delete="CASCADE")
        period = CharField()
        limit = IntegerField()
        action = CharField(default="defer")

        class Meta:
            indexes = ((("account", "period"), True),)

    class ProviderGroup(Base):
        id = AutoField()
        name = CharField(unique=True)
        position = IntegerField(default=0)
        domain_patterns = TextField(default="")
        mx_patterns = TextField(default="")
        hourly_cap = IntegerField(null=True)
        session_cap = IntegerField(null=True)
        throttled_until = DateTimeField(null=True)
        throttle_strikes = IntegerField(default=0)
        throttle_reply = TextField(default="")
        throttled_at = DateTimeField(null=True)

    class SendCount(Base):
        id = AutoField()
        provider = CharField()
        hour = DateTimeField(index=True)
        count = IntegerField(default=0)

        class Meta:
            indexes = ((("provider", "hour"), True),)

    class WarmupPlan(Base):
        id = AutoField()
        enabled = BooleanField(default=False)
        start_date = DateField(null=True)
        steps = TextField(default="")

    class AccountReputation(Base):
        account = ForeignKeyField(SmtpAccount, primary_key=True, on_delete="CASCADE")
        state = CharField(default="ok")
        reason = CharField(default="")
        sent = IntegerField(default=0)
        bounced = IntegerField(default=0)
        complaints = IntegerField(default=0)
        checked_at = DateTimeField(default=now)

    db.create_tables([AccountQuota, ProviderGroup, SendCount, WarmupPlan, AccountReputation])

"""Senders, domains (DKIM keys, DNS status), alerts; sender authorization on SMTP accounts."""

import datetime

from peewee import AutoField, BooleanField, CharField, DateTimeField, IntegerField, Model, TextField
from playhouse.migrate import migrate


def up(migrator, db):
    now = datetime.datetime.utcnow

    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Sender(Base):
        id = AutoField()
        email = CharField(unique=True)
        created_at = DateTimeField(default=now)
        verified_at = DateTimeField(null=True)
        verified_by = CharField(default="")
        link_sent_at = DateTimeField(null=True)

    class Domain(Base):
        id = AutoField()
        name = CharField(unique=True)
        selector = CharField()
        rsa_key = TextField()
        ed25519_key = TextField()
        next_selector = CharField(null=True)
        next_rsa_key = TextField(default="")
        next_ed25519_key = TextField(default="")
        verified = BooleanField(default=False)
        record_status = TextField(default="{}")
        created_at = DateTimeField(default=now)
        last_checked_at = DateTimeField(null=True)

    class Alert(Base):
        id = AutoField()
        kind = CharField()
        severity = CharField(default="warning")
        subject = CharField()
        text = TextField(default="")
        first_seen = DateTimeField(default=now)
        last_seen = DateTimeField(default=now)
        count = IntegerField(default=1)
        acknowledged = BooleanField(default=False)
        acknowledged_at = DateTimeField(null=True)
        acknowledged_by = CharField(default="")

        class Meta:
            indexes = ((("kind", "subject", "acknowledged"), False),)

    db.create_tables([Sender, Domain, Alert])
    migrate(
        migrator.add_column("smtp_account", "authorized_domains", TextField(default="")),
        migrator.add_column("smtp_account", "authorized_senders", TextField(default="")),
        migrator.add_column("smtp_account", "sender_mode", CharField(default="block")),
    )

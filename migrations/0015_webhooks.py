"""Webhooks: endpoints, each event waiting for one of them, and every call made (docs/webhooks.md)."""

import datetime

from peewee import AutoField, BooleanField, CharField, DateTimeField, ForeignKeyField, IntegerField, Model, TextField


def up(migrator, db):
    now = datetime.datetime.utcnow

    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Message(Base):
        id = CharField(primary_key=True, max_length=26)

    class Webhook(Base):
        id = AutoField()
        url = TextField()
        event_types = TextField(default="")
        account_ids = TextField(default="")
        secret = CharField()
        active = BooleanField(default=True)
        created_at = DateTimeField(default=now)
        failing_since = DateTimeField(null=True)
        last_success_at = DateTimeField(null=True)
        disabled_reason = TextField(default="")

    class WebhookDelivery(Base):
        id = AutoField()
        webhook = ForeignKeyField(Webhook, on_delete="CASCADE")
        message = ForeignKeyField(Message, null=True, on_delete="CASCADE")
        event_type = CharField()
        msg_id = CharField(unique=True)
        payload = TextField()
        status = CharField(default="pending")
        attempts = IntegerField(default=0)
        next_attempt_at = DateTimeField(default=now)
        lease_until = DateTimeField(null=True)
        created_at = DateTimeField(default=now)
        finished_at = DateTimeField(null=True)

        class Meta:
            indexes = (
                (("webhook", "message", "id"), False),
                (("status", "next_attempt_at"), False),
            )

    class WebhookCall(Base):
        id = AutoField()
        delivery = ForeignKeyField(WebhookDelivery, on_delete="CASCADE")
        webhook = ForeignKeyField(Webhook, on_delete="CASCADE")
        at = DateTimeField(default=now)
        status_code = IntegerField(null=True)
        duration_ms = IntegerField(default=0)
        ok = BooleanField(default=False)
        excerpt = TextField(default="")

        class Meta:
            indexes = ((("webhook", "at"), False),)

    db.create_tables([Webhook, WebhookDelivery, WebhookCall])

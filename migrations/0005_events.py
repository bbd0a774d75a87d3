"""The events layer: one row per outcome of a message (accepted, delivered, bounced, …)."""

import datetime

from peewee import AutoField, CharField, DateTimeField, ForeignKeyField, Model, TextField


def up(migrator, db):
    now = datetime.datetime.utcnow

    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Message(Base):
        id = CharField(primary_key=True, max_length=26)

    class Event(Base):
        id = AutoField()
        message = ForeignKeyField(Message, on_delete="CASCADE")
        recipient = CharField(default="")
        type = CharField()
        at = DateTimeField(default=now)
        details = TextField(default="{}")

        class Meta:
            indexes = (
                (("message", "at", "id"), False),
                (("type", "at"), False),
            )

    db.create_tables([Event])

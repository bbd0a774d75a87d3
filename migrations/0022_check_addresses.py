"""The deliverability checker's check addresses (docs/checker.md)."""

from peewee import AutoField, CharField, DateTimeField, Model, TextField


class _CheckAddress(Model):
    """The table as this migration creates it (later models may differ)."""

    id = AutoField()
    tracking_id = CharField(unique=True, max_length=16)
    created_at = DateTimeField()
    expires_at = DateTimeField()
    message_id = CharField(null=True, max_length=26)
    received_at = DateTimeField(null=True)
    mail_from = CharField(default="")
    client_ip = CharField(default="", max_length=45)
    grade = CharField(default="", max_length=1)
    findings = TextField(default="")

    class Meta:
        table_name = "check_address"


def up(migrator, db):
    with db.bind_ctx([_CheckAddress]):
        db.create_tables([_CheckAddress])

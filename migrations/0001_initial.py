"""Accounts, admins, messages, deliveries, attempts, suppressions (frozen copy of the first models)."""

import datetime

from peewee import (
    AutoField,
    BlobField,
    BooleanField,
    CharField,
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

    class AdminUser(Base):
        id = AutoField()
        email = CharField(unique=True)
        password_hash = CharField()
        role = CharField(default="admin")
        created_at = DateTimeField(default=now)
        last_login_at = DateTimeField(null=True)

    class SmtpAccount(Base):
        id = AutoField()
        name = CharField()
        username = CharField(unique=True, null=True)
        password_hash = CharField(default="")
        active = BooleanField(default=True)
        priority = IntegerField(default=3)
        note = TextField(default="")
        ip_rules = TextField(default="")
        ip_only = BooleanField(default=False)
        created_at = DateTimeField(default=now)
        last_login_at = DateTimeField(null=True)
        last_login_ip = CharField(null=True)
        last_failure_at = DateTimeField(null=True)
        last_failure_ip = CharField(null=True)
        last_failure_reason = CharField(null=True)

    class Message(Base):
        id = CharField(primary_key=True, max_length=26)
        account = ForeignKeyField(SmtpAccount, null=True, on_delete="SET NULL")
        direction = CharField(default="outbound")
        status = CharField(default="queued", index=True)
        mail_from = CharField(default="")
        rcpt_count = IntegerField(default=0)
        from_header = CharField(default="")
        subject = CharField(default="")
        message_id_header = CharField(default="")
        size = IntegerField(default=0)
        priority = IntegerField(default=3)
        client_ip = CharField(default="")
        client_helo = CharField(default="")
        tls = CharField(default="")
        received_at = DateTimeField(default=now, index=True)

    class MessageBody(Base):
        message = ForeignKeyField(Message, primary_key=True, on_delete="CASCADE")
        data = BlobField()

    class Delivery(Base):
        id = AutoField()
        message = ForeignKeyField(Message, on_delete="CASCADE")
        rcpt = CharField()
        domain = CharField(index=True)
        status = CharField(default="queued")
        priority = IntegerField(default=3)
        attempts = IntegerField(default=0)
        next_attempt_at = DateTimeField(default=now)
        lease_until = DateTimeField(null=True)
        last_code = IntegerField(null=True)
        last_reply = TextField(default="")
        updated_at = DateTimeField(default=now)
        delivered_at = DateTimeField(null=True)

        class Meta:
            indexes = ((("status", "priority", "next_attempt_at"), False),)

    class Attempt(Base):
        id = AutoField()
        delivery = ForeignKeyField(Delivery, on_delete="CASCADE")
        started_at = DateTimeField(default=now)
        duration_ms = IntegerField(default=0)
        mx_host = CharField(default="")
        mx_ip = CharField(default="")
        tls = CharField(default="")
        code = IntegerField(null=True)
        enhanced_code = CharField(default="")
        text = TextField(default="")
        outcome = CharField(default="")

    class Suppression(Base):
        id = AutoField()
        address = CharField(unique=True)
        reason = TextField(default="")
        source = CharField(default="manual")
        created_at = DateTimeField(default=now)

    db.create_tables([AdminUser, SmtpAccount, Message, MessageBody, Delivery, Attempt, Suppression])

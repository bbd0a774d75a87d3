"""Dashboard security: server-side sessions, TOTP and recovery codes, users (invite, disable), audit log."""

import datetime

from peewee import AutoField, BooleanField, CharField, DateTimeField, ForeignKeyField, IntegerField, Model, TextField
from playhouse.migrate import migrate


def up(migrator, db):
    now = datetime.datetime.utcnow

    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class AdminUser(Base):
        id = AutoField()

    class RecoveryCode(Base):
        id = AutoField()
        admin = ForeignKeyField(AdminUser, on_delete="CASCADE")
        code_hash = CharField()
        used_at = DateTimeField(null=True)

    class WebSession(Base):
        id = CharField(primary_key=True, max_length=64)
        admin = ForeignKeyField(AdminUser, null=True, on_delete="CASCADE")
        data = TextField(default="")
        ip = CharField(default="")
        created_at = DateTimeField(default=now)
        last_seen_at = DateTimeField(default=now)
        expires_at = DateTimeField(index=True)

    class AuditEntry(Base):
        id = AutoField()
        at = DateTimeField(default=now)
        actor = CharField()
        ip = CharField(default="")
        action = CharField()
        subject = CharField(default="")
        detail = TextField(default="")

    class DashboardSetting(Base):
        key = CharField(primary_key=True)
        value = TextField(default="")

    migrate(
        migrator.add_column("admin_user", "active", BooleanField(default=True)),
        migrator.add_column("admin_user", "invited_at", DateTimeField(null=True)),
        migrator.add_column("admin_user", "totp_secret", CharField(default="")),
        migrator.add_column("admin_user", "totp_last_step", IntegerField(default=0)),
    )
    db.create_tables([RecoveryCode, WebSession, AuditEntry, DashboardSetting])

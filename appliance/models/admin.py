"""The dashboard's people: admins, their recovery codes and sessions, the audit log, dashboard settings."""

from __future__ import annotations

from peewee import (
    AutoField,
    BooleanField,
    CharField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    TextField,
)

from .. import clock
from .base import BaseModel


class AdminUser(BaseModel):
    id = AutoField()
    email = CharField(unique=True)
    password_hash = CharField()
    role = CharField(default="admin")  # admin | viewer
    created_at = DateTimeField(default=clock.now)
    last_login_at = DateTimeField(null=True)
    active = BooleanField(default=True)  # a disabled user cannot sign in
    invited_at = DateTimeField(null=True)  # the newest invitation link; older ones stop working
    totp_secret = CharField(default="")  # base32 TOTP secret; empty: no second factor
    totp_last_step = IntegerField(default=0)  # the newest TOTP time step used: each code works once


class RecoveryCode(BaseModel):
    """A one-time code that stands in for the TOTP code (its SHA-256: the code has 80 random bits)."""

    id = AutoField()
    admin = ForeignKeyField(AdminUser, backref="recovery_codes", on_delete="CASCADE")
    code_hash = CharField()
    used_at = DateTimeField(null=True)


class WebSession(BaseModel):
    """A dashboard session: the cookie carries a random id, this row (keyed by its SHA-256) the rest."""

    id = CharField(primary_key=True, max_length=64)
    admin = ForeignKeyField(AdminUser, null=True, backref="sessions", on_delete="CASCADE")
    data = TextField(default="")
    ip = CharField(default="")
    created_at = DateTimeField(default=clock.now)
    last_seen_at = DateTimeField(default=clock.now)
    expires_at = DateTimeField(index=True)


class AuditEntry(BaseModel):
    """Who changed what in the dashboard or with the CLI (appliance.audit.record writes these)."""

    id = AutoField()
    at = DateTimeField(default=clock.now)
    actor = CharField()  # the dashboard user's e-mail, "cli" or "system"
    ip = CharField(default="")
    action = CharField()  # noun.verb: "account.create", "user.disable", …
    subject = CharField(default="")  # what it was done to, in words: "account 3.shop.smtp"
    detail = TextField(default="")


class DashboardSetting(BaseModel):
    """A choice an admin makes in the dashboard (not a start-up setting of appliance.config)."""

    key = CharField(primary_key=True)
    value = TextField(default="")

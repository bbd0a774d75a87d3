"""The HTTP API's tables: the API keys of the SMTP accounts and of the dashboard's admins, and the
answers kept for idempotency keys."""

from __future__ import annotations

from peewee import AutoField, CharField, DateTimeField, ForeignKeyField

from .. import clock
from .admin import AdminUser
from .base import BaseModel
from .mail import SmtpAccount

SEND, READ, MANAGE = "send", "read", "manage"
SCOPES = (SEND, READ, MANAGE)


class ApiKey(BaseModel):
    """A key of an SMTP account, or an admin key of a dashboard admin (``account`` None): ``prefix``
    finds the row (it is in the key, in clear), ``secret_hash`` is credentials.hash_secret of the
    rest; a revoked key keeps its row (the dashboard shows it)."""

    id = AutoField()
    account = ForeignKeyField(SmtpAccount, null=True, backref="api_keys", on_delete="CASCADE")
    admin = ForeignKeyField(AdminUser, null=True, backref="api_keys", on_delete="CASCADE")
    prefix = CharField(unique=True, max_length=32)
    secret_hash = CharField()
    scope = CharField(default=SEND)  # send | read | manage
    name = CharField(default="")
    created_at = DateTimeField(default=clock.now)
    last_used_at = DateTimeField(null=True)
    revoked_at = DateTimeField(null=True)


class IdempotentAnswer(BaseModel):
    """The message a request with an Idempotency-Key created (per API key), kept for a day: a retry
    with the same key gets the same answer and creates nothing."""

    id = AutoField()
    api_key = ForeignKeyField(ApiKey, backref="answers", on_delete="CASCADE")
    key = CharField(max_length=255)
    request_hash = CharField(max_length=64)  # SHA-256 of the request's content type and body
    message_id = CharField(max_length=26)
    created_at = DateTimeField(default=clock.now)

    class Meta:
        indexes = ((("api_key", "key"), True), (("api_key", "created_at"), False))

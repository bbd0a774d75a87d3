"""API keys of the SMTP accounts (docs/api.md): a prefix in clear to find the row, the secret's hash, a scope."""

from peewee import AutoField, CharField, DateTimeField, ForeignKeyField, Model


class _SmtpAccount(Model):
    id = AutoField()

    class Meta:
        table_name = "smtp_account"


class _ApiKey(Model):
    """The table as this migration creates it (later models may differ)."""

    id = AutoField()
    account = ForeignKeyField(_SmtpAccount, on_delete="CASCADE", column_name="account_id")
    prefix = CharField(unique=True, max_length=32)
    secret_hash = CharField()
    scope = CharField(default="send")
    name = CharField(default="")
    created_at = DateTimeField()
    last_used_at = DateTimeField(null=True)
    revoked_at = DateTimeField(null=True)

    class Meta:
        table_name = "api_key"


def up(migrator, db):
    with db.bind_ctx([_SmtpAccount, _ApiKey]):
        db.create_tables([_ApiKey])

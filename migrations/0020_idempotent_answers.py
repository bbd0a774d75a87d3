"""The answers kept for the HTTP API's Idempotency-Key header (docs/api.md): a day per API key."""

from peewee import AutoField, CharField, DateTimeField, ForeignKeyField, Model


class _ApiKey(Model):
    id = AutoField()

    class Meta:
        table_name = "api_key"


class _IdempotentAnswer(Model):
    """The table as this migration creates it (later models may differ)."""

    id = AutoField()
    api_key = ForeignKeyField(_ApiKey, on_delete="CASCADE", column_name="api_key_id")
    key = CharField(max_length=255)
    request_hash = CharField(max_length=64)
    message_id = CharField(max_length=26)
    created_at = DateTimeField()

    class Meta:
        table_name = "idempotent_answer"
        indexes = ((("api_key", "key"), True), (("api_key", "created_at"), False))


def up(migrator, db):
    with db.bind_ctx([_ApiKey, _IdempotentAnswer]):
        db.create_tables([_IdempotentAnswer])

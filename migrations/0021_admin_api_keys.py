"""Admin API keys (docs/api.md): a key owned by a dashboard admin instead of an SMTP account."""

from peewee import AutoField, ForeignKeyField, Model
from playhouse.migrate import migrate


class _AdminUser(Model):
    id = AutoField()

    class Meta:
        table_name = "admin_user"


def up(migrator, db):
    with db.bind_ctx([_AdminUser]):
        admin = ForeignKeyField(_AdminUser, null=True, on_delete="CASCADE", field=_AdminUser.id)
        migrate(
            migrator.drop_not_null("api_key", "account_id"),
            migrator.add_column("api_key", "admin_id", admin),
        )

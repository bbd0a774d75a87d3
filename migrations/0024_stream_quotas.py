"""Quotas of one stream: an account's quota may count only its transactional or only its broadcast
mail (`stream`; empty: all its mail), so each (stream, period) has at most one quota."""

from peewee import CharField
from playhouse.migrate import migrate


def up(migrator, db):
    migrate(
        migrator.add_column("account_quota", "stream", CharField(default="")),
        migrator.drop_index("account_quota", "account_quota_account_id_period"),
        migrator.add_index("account_quota", ("account_id", "stream", "period"), True),
    )

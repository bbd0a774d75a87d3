"""Streams and tracking: an account's default stream and tracking choices, each message's stream and
tracking, a random tracking id per tracked delivery, and suppressions scoped to one stream of one
sending domain (an unsubscribe) beside those of every stream (a hard bounce, a complaint)."""

from peewee import BooleanField, CharField
from playhouse.migrate import migrate


def up(migrator, db):
    migrate(
        migrator.add_column("smtp_account", "stream", CharField(default="transactional")),
        migrator.add_column("smtp_account", "track_opens", BooleanField(null=True)),
        migrator.add_column("smtp_account", "track_clicks", BooleanField(null=True)),
        migrator.add_column("message", "stream", CharField(default="transactional")),
        migrator.add_column("message", "track_opens", BooleanField(default=False)),
        migrator.add_column("message", "track_clicks", BooleanField(default=False)),
        migrator.add_index("message", ("stream", "received_at", "id"), False),
        migrator.add_column("delivery", "tracking_id", CharField(null=True)),
        migrator.add_index("delivery", ("tracking_id",), True),
        migrator.add_column("suppression", "stream", CharField(default="")),
        migrator.add_column("suppression", "domain", CharField(default="")),
        migrator.drop_index("suppression", "suppression_address"),
        migrator.add_index("suppression", ("address", "stream", "domain"), True),
    )

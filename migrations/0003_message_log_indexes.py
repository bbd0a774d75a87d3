"""Indexes for the dashboard's message log: keyset pages by (received_at, id) under each filter."""

from playhouse.migrate import migrate


def up(migrator, db):
    migrate(
        migrator.add_index("message", ("received_at", "id")),
        migrator.add_index("message", ("account_id", "received_at", "id")),
        migrator.add_index("message", ("status", "received_at", "id")),
        migrator.add_index("message", ("mail_from", "received_at")),
        migrator.add_index("message", ("message_id_header",)),
        migrator.add_index("delivery", ("rcpt",)),
    )

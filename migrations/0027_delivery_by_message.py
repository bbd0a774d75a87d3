"""Deliveries found by message and recipient, and by message and status, instead of by message alone: a
list send's message has a delivery per member (100,000 and more), and expanding it (the last member
that has one, the batch just added) and recomputing its status after each outcome (which statuses
its deliveries have) read every one of them with the message index alone."""

from playhouse.migrate import migrate


def up(migrator, db):
    migrate(
        migrator.add_index("delivery", ("message_id", "rcpt"), False),
        migrator.add_index("delivery", ("message_id", "status"), False),
        migrator.drop_index("delivery", "delivery_message_id"),
    )

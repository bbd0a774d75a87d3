"""The subscriber of the events layer that feeds the webhook endpoints (docs/webhooks.md).

Inside the transaction that stores events, those that an active endpoint wants become pending webhook
deliveries (one insert for the transaction's events): they commit with the events or not at all, so no
crash can lose the webhook of a stored event, and they cost no commit of their own. After the commit,
one Huey task per 50 of them. The calls themselves are made by the workers (appliance/webhooks/send.py),
never here: this runs on whatever thread writes events, the writer thread of intake included.
"""

from __future__ import annotations

from . import db, events, queue, webhooks


def connect(settings: dict) -> None:
    """Subscribe the feed for ``settings`` (create_app calls it)."""
    webhooks.invalidate()  # another app (a test's) may have cached another database's endpoints

    def enqueue(msg_ids: list[str]) -> None:
        queue.runtime(settings).enqueue_webhooks([webhooks.Next(m, 0) for m in msg_ids])

    def feed(stored: list[events.Occurred]) -> None:
        rows = webhooks.pending_rows(stored)
        if rows:
            (msg_ids,) = webhooks.insert_pending([rows])
            if msg_ids:
                db.after_commit(enqueue, msg_ids)

    events.subscribe_within(events.TYPES, feed)

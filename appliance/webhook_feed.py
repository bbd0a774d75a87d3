"""The subscriber of the events layer that feeds the webhook endpoints (docs/webhooks.md).

After a transaction commits, its events that an active endpoint wants become pending webhook
deliveries: one insert for the whole commit, on the process's writer when one runs, where it waits
up to SHARE_COMMIT_WITHIN for the next job (accepted mail, an outcome) to share that job's commit
instead of paying for a commit (an fsync) of its own; then one Huey task per 50 of them. The calls
themselves are made by the workers (appliance/webhooks/send.py), never here: this runs on whatever
thread committed, the writer thread of intake included.
"""

from __future__ import annotations

from . import db, events, queue, webhooks

SHARE_COMMIT_WITHIN = 0.05  # seconds the rows may wait on the writer for another job's commit


def connect(settings: dict) -> None:
    """Subscribe the feed for ``settings`` (create_app calls it)."""
    webhooks.invalidate()  # another app (a test's) may have cached another database's endpoints

    def enqueue(batches: list[list[str]]) -> None:
        queue.runtime(settings).enqueue_webhooks([webhooks.Next(m, 0) for batch in batches for m in batch])

    def feed(committed: list[events.Occurred]) -> None:
        rows = webhooks.pending_rows(committed)
        if rows:
            db.write_many(webhooks.insert_pending, rows, after=enqueue, lazy=SHARE_COMMIT_WITHIN)

    events.subscribe(events.TYPES, feed)

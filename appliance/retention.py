"""Retention: old message bodies, then old messages, purged in small batches; the space given back;
the database's size and the free disk of DATA_DIR, and the alert when that disk runs low.

A message's body goes RETENTION_BODY_DAYS after it was received, the message itself (with its
deliveries, attempts and events) RETENTION_DAYS after; 0 keeps them for ever. Mail with a delivery
still queued, being sent, deferred or held is never purged, whatever its age: its body is what
will be sent. Each batch of BATCH messages is one short write transaction on the process's writer
(the one intake's group commits use), so intake waits for at most one batch, never for a purge.
On SQLite the freed pages go back to the file system (auto_vacuum=INCREMENTAL, migration 0013)
in steps of VACUUM_PAGES pages, each also its own transaction.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from peewee import fn

from . import alerts, clock, db
from .models import CRITICAL, PENDING_STATUSES, Attempt, Delivery, Event, Message, MessageBody

log = logging.getLogger(__name__)

BATCH = 500  # messages examined (and at most purged) per write transaction
VACUUM_PAGES = 1000  # SQLite pages (4 KiB each by default) given back per write transaction
# After each batch or vacuum step the purge waits PAUSE_SHARE times as long as that step took (at
# least PAUSE_SECONDS): it has the writer, and the disk, a third of the time at most, and intake's
# commits (and their fsyncs) go between two steps instead of queueing behind a stream of them.
PAUSE_SHARE = 2.0
PAUSE_SECONDS = 0.005
DISK_SPACE_LOW = "disk-space-low"  # the alert kind


@dataclass
class Report:
    """What a purge did (or, for a dry run, would do)."""

    dry_run: bool
    body_cutoff: dt.datetime | None  # bodies of mail received before this go; None: kept for ever
    message_cutoff: dt.datetime | None
    bodies: int = 0
    messages: int = 0
    deliveries: int = 0
    attempts: int = 0
    events: int = 0
    kept_pending: int = 0  # messages past a cutoff kept because a delivery is still pending
    size_before: int = 0  # bytes (database_size)
    size_after: int = 0
    batches: int = 0
    seconds: float = 0.0
    vacuumed_pages: int = 0

    def as_dict(self) -> dict:
        return {
            k: (v.isoformat(sep=" ", timespec="seconds") if isinstance(v, dt.datetime) else v)
            for k, v in asdict(self).items()
        }


def cutoffs(settings: dict, now: dt.datetime) -> tuple[dt.datetime | None, dt.datetime | None]:
    """The reception times before which bodies, and messages, are purged (None: never)."""

    def before(days: int) -> dt.datetime | None:
        return now - dt.timedelta(days=days) if days > 0 else None

    return before(settings["RETENTION_BODY_DAYS"]), before(settings["RETENTION_DAYS"])


# -- choosing a batch ---------------------------------------------------------------------------
def _candidates(cutoff: dt.datetime, after: tuple, with_body: bool) -> tuple[list[str], int, tuple | None]:
    """The next BATCH messages received before ``cutoff`` in (received_at, id) order after the
    keyset position ``after``: (the ids that may go, how many were kept as pending, the position
    to go on from, None at the end). ``with_body`` examines only messages that still have a body."""
    p = db.database.param
    at = Message.received_at.db_value
    where = f'm."received_at" < {p}'
    params: list = [at(cutoff)]
    if after:
        where += f' AND (m."received_at" > {p} OR (m."received_at" = {p} AND m."id" > {p}))'
        params += [at(after[0]), at(after[0]), after[1]]
    cursor = db.database.execute_sql(
        f'SELECT m."id", m."received_at", '
        f'EXISTS (SELECT 1 FROM "delivery" d WHERE d."message_id" = m."id" '
        f'AND d."status" IN ({db.marks(len(PENDING_STATUSES))})), '
        f'EXISTS (SELECT 1 FROM "message_body" b WHERE b."message_id" = m."id") '
        f'FROM "message" m WHERE {where} ORDER BY m."received_at", m."id" LIMIT {BATCH}',
        [*PENDING_STATUSES, *params],
    )
    rows = cursor.fetchall()
    if not rows:
        return [], 0, None
    ids = [r[0] for r in rows if not r[2] and (r[3] or not with_body)]
    kept = sum(1 for r in rows if r[2])
    last = rows[-1]
    return ids, kept, (Message.received_at.python_value(last[1]), last[0])


def _purge_bodies(ids: list[str]) -> int:
    # Pending mail is checked again inside the transaction: an admin may have retried or released
    # a message between the choice and this write.
    return MessageBody.delete().where(MessageBody.message.in_(ids) & ~_pending(MessageBody.message)).execute()


def _pending(message_column):
    """The condition: the message in ``message_column`` has a delivery still pending."""
    return fn.EXISTS(
        Delivery.select(Delivery.id).where(
            (Delivery.message == message_column) & Delivery.status.in_(list(PENDING_STATUSES))
        )
    )


def _purge_messages(ids: list[str]) -> tuple[int, int, int, int]:
    """Delete these messages (those still not pending) with everything that hangs off them; return
    (messages, deliveries, attempts, events)."""
    gone = [m for (m,) in Message.select(Message.id).where(Message.id.in_(ids) & ~_pending(Message.id)).tuples()]
    if not gone:
        return 0, 0, 0, 0
    deliveries = Delivery.select(Delivery.id).where(Delivery.message.in_(gone))
    attempts = Attempt.delete().where(Attempt.delivery.in_(deliveries)).execute()
    events = Event.delete().where(Event.message.in_(gone)).execute()
    MessageBody.delete().where(MessageBody.message.in_(gone)).execute()
    removed = Delivery.delete().where(Delivery.message.in_(gone)).execute()
    messages = Message.delete().where(Message.id.in_(gone)).execute()
    return messages, removed, attempts, events


def _count_eligible(cutoff: dt.datetime, with_body: bool) -> tuple[int, int]:
    """(messages that would go, messages kept as pending) among those received before ``cutoff``."""
    pending = _pending(Message.id)
    old = Message.received_at < cutoff
    query = Message.select().where(old & ~pending)
    if with_body:
        query = query.join(MessageBody, on=(MessageBody.message == Message.id))
    return query.count(), Message.select().where(old & pending).count()


# -- running a purge ------------------------------------------------------------------------------
def purge(settings: dict, *, dry_run: bool = False, now: dt.datetime | None = None) -> Report:
    """Purge old bodies, then old messages, batch by batch; give the space back. ``dry_run`` only
    counts what would go."""
    started = time.monotonic()
    body_cutoff, message_cutoff = cutoffs(settings, now or clock.now())
    report = Report(dry_run, body_cutoff, message_cutoff, size_before=database_size(settings))
    if dry_run:
        if body_cutoff is not None:
            report.bodies, report.kept_pending = _count_eligible(body_cutoff, with_body=True)
        if message_cutoff is not None:
            report.messages, kept = _count_eligible(message_cutoff, with_body=False)
            report.kept_pending = max(report.kept_pending, kept)
        report.size_after = report.size_before
        report.seconds = time.monotonic() - started
        return report
    for cutoff, with_body in ((body_cutoff, True), (message_cutoff, False)):
        if cutoff is None:
            continue
        after: tuple = ()
        kept_here = 0
        while True:
            ids, kept_batch, position = _candidates(cutoff, after, with_body)
            kept_here += kept_batch
            if ids:
                step = time.monotonic()
                if with_body:
                    report.bodies += db.write(lambda ids=ids: _purge_bodies(ids)).result()
                else:
                    counts = db.write(lambda ids=ids: _purge_messages(ids)).result()
                    report.messages += counts[0]
                    report.deliveries += counts[1]
                    report.attempts += counts[2]
                    report.events += counts[3]
                report.batches += 1
                _pause(step)
            if position is None:
                break
            after = position
        # The body pass sees every pending message the message pass sees, and more.
        report.kept_pending = max(report.kept_pending, kept_here)
    if report.bodies or report.messages:
        report.vacuumed_pages = give_space_back()
    report.size_after = database_size(settings)
    report.seconds = time.monotonic() - started
    if report.bodies or report.messages:
        log.info(
            "retention: %d bodies and %d messages purged in %d batches (%.1f s), %d pending kept, "
            "database %d -> %d bytes",
            report.bodies,
            report.messages,
            report.batches,
            report.seconds,
            report.kept_pending,
            report.size_before,
            report.size_after,
        )
    return report


def give_space_back() -> int:
    """SQLite: return the free pages to the file system, VACUUM_PAGES per transaction; return how
    many. PostgreSQL reuses the space of deleted rows (autovacuum): nothing to do."""
    if not db.is_sqlite():
        return 0
    total = 0
    while True:
        free = db.database.execute_sql("PRAGMA freelist_count").fetchone()[0]
        if not free:
            return total
        step = time.monotonic()
        db.incremental_vacuum(min(free, VACUUM_PAGES))
        after = db.database.execute_sql("PRAGMA freelist_count").fetchone()[0]
        if after >= free:  # auto_vacuum is off on this file (not migrated): nothing more to give back
            return total
        total += free - after
        _pause(step)


def _pause(step_started: float) -> None:
    """Wait PAUSE_SHARE times as long as the step that started at ``step_started`` took (at least
    PAUSE_SECONDS)."""
    time.sleep(max(PAUSE_SECONDS, PAUSE_SHARE * (time.monotonic() - step_started)))


# -- size and free disk -------------------------------------------------------------------------
def database_size(settings: dict) -> int:
    """Bytes the database takes: SQLite's pages (the file once the WAL is checkpointed; the WAL
    itself is reused, not grown, from one checkpoint to the next), or PostgreSQL's pg_database_size."""
    if not db.is_sqlite():
        return int(db.database.execute_sql("SELECT pg_database_size(current_database())").fetchone()[0])
    pages = db.database.execute_sql("PRAGMA page_count").fetchone()[0]
    return pages * db.database.execute_sql("PRAGMA page_size").fetchone()[0]


def free_disk(settings: dict) -> int:
    """Bytes free (for this user) on the file system of DATA_DIR."""
    path = Path(settings["DATA_DIR"])
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


_low: dict[str, bool] = {}  # DATA_DIR → its disk was low at the last check (alert raised once per episode)


def check_disk(settings: dict) -> bool:
    """Raise the disk-space-low alert when DATA_DIR's disk has less than DISK_ALERT_FREE_MB free
    (once, until it has recovered); return whether it is low."""
    threshold = settings["DISK_ALERT_FREE_MB"] * 1024 * 1024
    free = free_disk(settings)
    low = threshold > 0 and free < threshold
    if low and not _low.get(settings["DATA_DIR"]):
        alerts.raise_alert(
            settings,
            DISK_SPACE_LOW,
            f"disk of {settings['DATA_DIR']}",
            f"{free // (1024 * 1024)} MiB free, under DISK_ALERT_FREE_MB ({settings['DISK_ALERT_FREE_MB']} MiB). "
            "When the disk is full, intake answers 452 4.3.1 and mail waits at the clients: free space, or "
            "shorten RETENTION_BODY_DAYS / RETENTION_DAYS and run `appliance retention run`.",
            CRITICAL,
        )
    _low[settings["DATA_DIR"]] = low
    return low

"""The queue: Delivery rows are the truth; Huey only carries their ids (and their destination
domain) to worker threads.

A row's lease (``lease_until``) means two things by status:
- `sending`: a worker owns the row until then; after that a sweep takes it back (the send may have
  happened: delivery is at-least-once, never at-most-once).
- `queued`/`deferred`: a task for the row is in Huey's queue until then, so sweeps do not enqueue
  it again; any worker may still claim it.
Huey alone loses the tasks that were running at a crash; the start-up and periodic sweeps put
every due or stale row back, so nothing acknowledged is lost.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import threading
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from huey import Huey, PriorityRedisHuey, SqliteHuey, crontab
from huey.consumer import Consumer
from huey.exceptions import TaskLockedException
from peewee import Case

from . import clock, db, delivery, events, fanout, guard, lists, retention, webhooks
from .delivery.sessions import SessionCounter
from .models import CANCELLED, DEFERRED, EXPANDING, HELD, QUEUED, SENDING, Claimed, Delivery, Message, refresh_messages
from .policy import quotas

log = logging.getLogger(__name__)

BATCH = 50  # delivery ids per task (one destination domain)
BUSY_RETRY_SECONDS = 1  # a destination at its session cap: look again this much later
RETENTION_MINUTE = "17"  # the purge runs hourly at this minute (few people schedule anything then)


@dataclass
class Runtime:
    """The queue bound to one configuration: its Huey, its task and its per-destination caps."""

    settings: dict
    huey: Huey
    slots: SessionCounter  # sessions per destination domain
    deliver_task: object = field(default=None)
    retention_task: object = field(default=None)
    expand_task: object = field(default=None)
    import_task: object = field(default=None)
    webhook_task: object = field(default=None)

    def enqueue(self, rows: list[tuple[int, str, int]]) -> int:
        """Enqueue (id, domain, priority) rows as tasks of up to BATCH ids per domain and priority."""
        groups: dict[tuple[str, int], list[int]] = defaultdict(list)
        for delivery_id, domain, priority in rows:
            groups[(domain, priority)].append(delivery_id)
        tasks = 0
        for (domain, priority), ids in sorted(groups.items(), key=lambda kv: kv[0][1]):
            for start in range(0, len(ids), BATCH):
                # Huey runs higher numbers first; Delivery.priority 1 is the highest.
                self.deliver_task(domain, ids[start : start + BATCH], priority=6 - priority)
                tasks += 1
        return tasks

    def enqueue_webhooks(self, follow: list[webhooks.Next]) -> None:
        """Enqueue webhook deliveries by ``msg_id``: those due now together, each later one on its own."""
        now = [n.msg_id for n in follow if n.delay <= 0]
        for start in range(0, len(now), BATCH):
            self.webhook_task(now[start : start + BATCH])
        for n in follow:
            if n.delay > 0:
                self.webhook_task.schedule(([n.msg_id],), delay=n.delay)


_runtime: Runtime | None = None


def make_huey(settings: dict) -> Huey:
    """Build the Huey for QUEUE_URL: SqliteHuey in DATA_DIR, or Redis for the scale-out mode."""
    url = settings["QUEUE_URL"]
    if url.startswith(("redis://", "rediss://", "unix://")):
        return PriorityRedisHuey("appliance", url=url, results=False)
    if url.startswith("sqlite:///"):
        filename = url.removeprefix("sqlite:///")
    elif not url:
        filename = str(Path(settings["DATA_DIR"]) / "queue.db")
    else:
        raise ValueError(f"QUEUE_URL: unsupported scheme in {url!r} (use redis:// or sqlite:///)")
    # Tasks only carry ids; the Delivery rows are the truth and sweeps re-enqueue anything lost,
    # so the task file needs no fsync (huey would otherwise leave SQLite's synchronous=FULL).
    return SqliteHuey("appliance", filename=filename, results=False, fsync=False)


def init(settings: dict) -> Runtime:
    """Bind the queue to ``settings`` (no thread starts here; see serve.start_queue)."""
    global _runtime
    huey = make_huey(settings)
    rt = Runtime(settings, huey, SessionCounter())

    def deliver(domain: str, ids: list[int]) -> None:
        _deliver_task(rt, domain, ids)

    rt.deliver_task = huey.task(name="deliver")(deliver)

    def expand(message_id: str) -> None:
        _expand_task(rt, message_id)

    # A list send's members, added before the deliveries of the mail that waits (priority 6, above all).
    rt.expand_task = huey.task(name="expand", priority=6)(expand)

    def import_members(job: str, list_id: str, data: bytes) -> None:
        _import_task(rt, job, list_id, data)

    rt.import_task = huey.task(name="list-import")(import_members)

    def call_webhooks(msg_ids: list[str]) -> None:
        db.connect_worker()
        rt.enqueue_webhooks(webhooks.deliver(settings, msg_ids))

    rt.webhook_task = huey.task(name="webhook")(call_webhooks)

    def purge() -> retention.Report | None:
        return _retention_task(rt)

    # Every worker process's consumer enqueues it on the hour; the lock lets one of them run it.
    rt.retention_task = huey.periodic_task(crontab(minute=RETENTION_MINUTE), name="retention")(purge)
    _runtime = rt
    return rt


def runtime(settings: dict) -> Runtime:
    """Return the queue bound to ``settings``, binding it on first use (CLI commands)."""
    if _runtime is None or _runtime.settings is not settings:
        return init(settings)
    return _runtime


# -- claiming ----------------------------------------------------------------------------------
def claim(ids: list[int], lease_seconds: int) -> list[Claimed]:
    """Take the rows among ``ids`` that are due and not leased to another worker.

    One UPDATE … WHERE id IN (…) AND (due, or leased and expired) RETURNING takes them: a row
    another worker took no longer matches, so two workers never both get it. It runs on the
    process's writer (shared commits) rather than on this worker's thread.
    """
    if not ids:
        return []
    return db.write(functools.partial(_take, lease_seconds, ids=ids)).result()


def claim_next(domain: str, limit: int, lease_seconds: int) -> list[Claimed]:
    """Claim the next due rows for ``domain`` in priority order, then age."""
    return db.write(functools.partial(_take, lease_seconds, domain=domain, limit=limit)).result()


def _take(lease_seconds: int, *, ids: list[int] | None = None, domain: str = "", limit: int = 0) -> list[Claimed]:
    """Lease the due rows among ``ids``, or the first ``limit`` due rows of ``domain``; return
    them in priority order, then age, with each message's rows together.

    Plain SQL: this runs for every batch on the writer thread, where building the statement with
    peewee cost more than running it.
    """
    now = clock.now()
    p, at = db.database.param, Delivery.next_attempt_at.db_value(now)
    due = f'(("status" IN ({p}, {p}) AND "next_attempt_at" <= {p}) OR ("status" = {p} AND "lease_until" < {p}))'
    due_params = (QUEUED, DEFERRED, at, SENDING, at)
    if ids is not None:
        wanted, wanted_params = f'"id" IN ({db.marks(len(ids))})', tuple(ids)
    else:
        wanted = (
            f'"id" IN (SELECT "id" FROM "delivery" WHERE "domain" = {p} AND {due} '
            f'ORDER BY "priority", "next_attempt_at", "id" LIMIT {p})'
        )
        wanted_params = (domain, *due_params, limit)
    lease = Delivery.lease_until.db_value(now + dt.timedelta(seconds=lease_seconds))
    cursor = db.database.execute_sql(
        f'UPDATE "delivery" SET "status" = {p}, "lease_until" = {p}, "updated_at" = {p} WHERE {wanted} AND {due} '
        'RETURNING "id", "message_id", "rcpt", "domain", "priority", "attempts", "next_attempt_at"',
        (SENDING, lease, at, *wanted_params, *due_params),
    )
    to_time = Delivery.next_attempt_at.python_value
    rows = [Claimed(*row[:6], to_time(row[6])) for row in cursor.fetchall()]
    rows.sort(key=lambda d: (d.priority, d.next_attempt_at, d.message_id, d.id))
    return rows


def _deliver_task(rt: Runtime, domain: str, ids: list[int]) -> None:
    """Huey task: deliver these rows of one destination domain, then what else is due for it,
    over one session."""
    settings = rt.settings
    db.connect_worker()
    if not rt.slots.acquire(domain, max(1, settings["SESSIONS_PER_DESTINATION"])):
        rt.deliver_task.schedule((domain, ids), delay=BUSY_RETRY_SECONDS)
        return
    lease = settings["LEASE_SECONDS"]
    try:
        rows = claim(ids, lease)
        if rows:
            delivery.deliver(rows, settings, more=lambda: claim_next(domain, BATCH, lease))
    finally:
        rt.slots.release(domain)


def _expand_task(rt: Runtime, message_id: str) -> None:
    """Huey task: add a list send's members as deliveries, a batch per transaction, enqueueing each
    batch's deliveries after its commit (a crash between the two leaves them to the sweeps)."""
    db.connect_worker()
    while True:
        batch = fanout.expand_batch(message_id, rt.settings["LIST_BATCH"])
        rt.enqueue(batch.queued)
        if batch.done:
            return


def _import_key(job: str) -> str:
    return f"list-import:{job}"


def start_import(rt: Runtime, list_id: str, data: bytes) -> str:
    """Hand a CSV file of members to a worker (the dashboard's import); return the job's id, whose
    state ``import_state`` reads (kept in Huey's storage: the web and the workers may be processes apart)."""
    lists.find(list_id)
    job = uuid.uuid4().hex
    total = max(data.count(b"\n") - 1, 1)  # the rows, about: lines after the header
    rt.huey.put(_import_key(job), {"list": list_id, "rows": 0, "total": total, "done": False})
    rt.import_task(job, list_id, data)
    return job


def import_state(rt: Runtime, job: str) -> dict | None:
    """An import's state: ``list``, ``rows`` read and about ``total``, ``done``, then ``report``
    (ImportReport.as_dict) or ``error``; None for a job this queue does not know."""
    return rt.huey.get(_import_key(job), peek=True)


def _import_task(rt: Runtime, job: str, list_id: str, data: bytes) -> None:
    """Huey task: import the members, putting how far it got after each batch."""
    db.connect_worker()
    key = _import_key(job)
    state = rt.huey.get(key, peek=True) or {"list": list_id, "rows": 0, "total": 1}

    def progress(rows: int) -> None:
        rt.huey.put(key, {**state, "rows": rows, "total": max(state["total"], rows), "done": False})

    try:
        report = lists.import_csv(list_id, data, progress)
    except lists.ListError as exc:
        rt.huey.put(key, {**state, "done": True, "error": str(exc)})
        return
    rt.huey.put(key, {**state, "rows": report.rows, "total": report.rows, "done": True, "report": report.as_dict()})


def _retention_task(rt: Runtime) -> retention.Report | None:
    """Huey periodic task: purge old bodies and messages (appliance/retention.py); None when another
    worker is running the purge already."""
    db.connect_worker()
    try:
        with rt.huey.lock_task("retention"):
            return retention.purge(rt.settings)
    except TaskLockedException:
        log.info("retention: a purge is running already")
        return None


# -- enqueueing and sweeps ---------------------------------------------------------------------
def enqueue_messages(rt: Runtime, message_ids: list[str]) -> int:
    """Enqueue the queued deliveries of freshly stored messages (intake's on_committed hook)."""
    # Selected by message only, status filtered here: given `status = 'queued'` too, SQLite picks
    # the status index and walks every queued delivery (the whole queue) for each commit.
    rows = (
        Delivery.select(Delivery.id, Delivery.domain, Delivery.priority, Delivery.status)
        .where(Delivery.message.in_(message_ids))
        .order_by(Delivery.id)
        .tuples()
    )
    tasks = rt.enqueue([(i, domain, priority) for i, domain, priority, status in rows if status == QUEUED])
    for (message_id,) in (
        Message.select(Message.id).where(Message.id.in_(message_ids), Message.status == EXPANDING).tuples()
    ):
        rt.expand_task(message_id)  # a list send: its members become deliveries in a worker
        tasks += 1
    return tasks


def sweep_webhooks(rt: Runtime, *, startup: bool = False) -> int:
    """Enqueue every webhook delivery that is due (its task lost, or a retry whose time has come);
    return how many."""
    due = webhooks.due(startup=startup)
    rt.enqueue_webhooks([webhooks.Next(msg_id, 0) for msg_id in due])
    return len(due)


def sweep(rt: Runtime, *, startup: bool = False) -> int:
    """Re-enqueue every due or stale row; return how many rows were enqueued.

    The periodic sweep skips rows whose task is known to be queued (lease not expired) and rows
    accepted within the last SWEEP_INTERVAL (their on_committed enqueue is in flight). At start-up
    with SQLite (one process by design) nothing else can be running, so every lease is stale.
    """
    settings = rt.settings
    now = clock.now()
    guard.check_reputation_if_due(settings, now)
    retention.check_disk(settings)
    released = quotas.release_due_holds(now, settings["LEASE_SECONDS"])  # mail held by a quota whose window has opened
    rt.enqueue(released)
    for message_id in fanout.pending():  # list sends a crash or a lost task left halfway
        rt.expand_task(message_id)
    pending = Delivery.status.in_([QUEUED, DEFERRED]) & (Delivery.next_attempt_at <= now)
    if startup and db.is_sqlite():
        stale = Delivery.status == SENDING
    else:
        stale = (Delivery.status == SENDING) & (Delivery.lease_until < now)
        if not startup:
            grace = now - dt.timedelta(seconds=settings["SWEEP_INTERVAL"])
            fresh = (Delivery.status == QUEUED) & (Delivery.attempts == 0) & (Delivery.updated_at > grace)
            pending &= (Delivery.lease_until.is_null() & ~fresh) | (Delivery.lease_until < now)
    rows = list(
        Delivery.select(Delivery.id, Delivery.domain, Delivery.priority)
        .where(pending | stale)
        .order_by(Delivery.priority, Delivery.next_attempt_at, Delivery.id)
        .tuples()
    )
    if not rows:
        return len(released)
    lease = now + dt.timedelta(seconds=settings["LEASE_SECONDS"])
    ids = [r[0] for r in rows]
    with db.atomic_write():
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            # A stale `sending` row goes back to waiting: its send may or may not have happened. The rows
            # were read outside this transaction: one claimed by a worker since (status `sending`, a new
            # lease) is not stale, and is left to that worker.
            Delivery.update(status=Case(None, ((Delivery.attempts == 0, QUEUED),), DEFERRED), updated_at=now).where(
                Delivery.id.in_(chunk) & stale
            ).execute()
            Delivery.update(lease_until=lease).where(Delivery.id.in_(chunk)).execute()
    rt.enqueue(rows)
    log.info("%s sweep: %d deliveries enqueued", "start-up" if startup else "periodic", len(rows) + len(released))
    return len(rows) + len(released)


# -- admin actions (CLI, dashboard) ------------------------------------------------------------
def _act(refs: list[Delivery], from_statuses: tuple[str, ...], event: str | None, by: str, **changes) -> list[Delivery]:
    ids = [d.id for d in refs if d.status in from_statuses]
    if not ids:
        return []
    now = clock.now()
    with db.atomic_write():
        # RETURNING tells which rows this statement changed (another actor may have moved some).
        changed = list(
            Delivery.update(updated_at=now, **changes)
            .where(Delivery.id.in_(ids) & Delivery.status.in_(list(from_statuses)))
            .returning(Delivery.message, Delivery.rcpt)
            .tuples()
            .execute()
        )
        refresh_messages({d.message_id for d in refs})
        if event is not None:
            details = {"by": by} if by else {}
            events.record([events.Occurred(m, event, rcpt, now, details) for m, rcpt in changed])
    return list(Delivery.select().where(Delivery.id.in_(ids)))


def retry(rt: Runtime, rows: list[Delivery], by: str = "") -> list[Delivery]:
    """Make deferred (or queued) rows due now and enqueue them."""
    changed = _act(rows, (QUEUED, DEFERRED), None, by, next_attempt_at=clock.now(), lease_until=None)
    rt.enqueue([(d.id, d.domain, d.priority) for d in changed])
    return changed


def hold(rows: list[Delivery], by: str = "") -> list[Delivery]:
    """Hold waiting rows: nothing sends them until they are released."""
    return _act(rows, (QUEUED, DEFERRED), events.HELD, by, status=HELD, lease_until=None)


def release(rt: Runtime, rows: list[Delivery], by: str = "") -> list[Delivery]:
    """Release held rows: they are due now."""
    changed = _act(rows, (HELD,), events.RELEASED, by, status=QUEUED, next_attempt_at=clock.now(), lease_until=None)
    rt.enqueue([(d.id, d.domain, d.priority) for d in changed])
    return changed


def cancel(rows: list[Delivery], by: str = "") -> list[Delivery]:
    """Cancel waiting or held rows for good (no DSN: the admin decided)."""
    return _act(rows, (QUEUED, DEFERRED, HELD), events.CANCELLED, by, status=CANCELLED, lease_until=None)


# -- running inside `serve` ---------------------------------------------------------------------
class EmbeddedConsumer(Consumer):
    """Huey's consumer as threads of our process: it must not take over the process's signals."""

    def _set_signal_handlers(self):
        pass


class Sweeper:
    """Run the periodic sweep every SWEEP_INTERVAL seconds until stopped."""

    def __init__(self, rt: Runtime):
        self.rt = rt
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(self.rt.settings["SWEEP_INTERVAL"]):
            try:
                db.database.connect(reuse_if_open=True)
                sweep(self.rt)
                sweep_webhooks(self.rt)
            except Exception:  # the next sweep tries again; a crash here would stop all retries
                log.exception("periodic sweep failed")


def consumer(rt: Runtime) -> EmbeddedConsumer:
    """Build (not start) the worker threads; idle workers poll every WORKER_POLL_INTERVAL s."""
    poll = float(rt.settings["WORKER_POLL_INTERVAL"])
    return EmbeddedConsumer(
        rt.huey,
        workers=rt.settings["WORKERS"],
        worker_type="thread",
        periodic=True,
        initial_delay=min(poll, 0.05),
        backoff=1.15,
        max_delay=poll,
        check_worker_health=False,
        shutdown_timeout=5,
    )

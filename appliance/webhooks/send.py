"""Webhook deliveries: the pending row written for each event an endpoint wants, the signed call a
worker makes for it, the retry schedule, the order per message, replays, test events, and the
endpoint that fails for days and is turned off (docs/webhooks.md).

Every function that calls out runs on a Huey worker (appliance/queue.py); what they write goes
through the process's writer (``db.write``) like the delivery of mail.
"""

from __future__ import annotations

import datetime as dt
import functools
import http.client
import json
import logging
import socket
import ssl
import time
from collections.abc import Iterable
from typing import Any, NamedTuple

from peewee import fn
from standardwebhooks.webhooks import Webhook as Signer
from ulid import ULID

from .. import alerts, audit, clock, db, events
from ..models import Webhook, WebhookCall, WebhookDelivery
from ..models.webhooks import DELIVERED, FAILED, PENDING, SENDING
from . import endpoints

log = logging.getLogger(__name__)

# Seconds before each retry of a failed call: 7 retries over 27 h 35 min, then the delivery fails.
SCHEDULE = (5, 300, 1800, 7200, 18000, 36000, 36000)
DISABLE_AFTER = dt.timedelta(days=3)  # an endpoint whose every call failed for this long is turned off
TIMEOUT = 10  # seconds to connect, and to wait for the answer
EXCERPT = 200  # characters of the answer kept with each call
TEST = "test"  # the event type of "send a test event"
WEBHOOK_DISABLED = "webhook-disabled"  # the alert raised when an endpoint is turned off
USER_AGENT = "appliance-webhooks/1"


def iso(at: dt.datetime) -> str:
    return at.isoformat(timespec="microseconds") + "Z"


def body(type_: str, at: dt.datetime, data: dict[str, Any]) -> str:
    """The JSON body of one event: {"type", "timestamp", "data"} as Standard Webhooks suggests."""
    kind = "webhook.test" if type_ == TEST else f"message.{type_}"
    return json.dumps({"type": kind, "timestamp": iso(at), "data": data}, separators=(",", ":"), ensure_ascii=False)


# -- recording: what the subscriber of the events layer writes -------------------------------------
def pending_rows(occurred: list[events.Occurred]) -> list[dict[str, Any]]:
    """The WebhookDelivery rows of these committed events, for the endpoints that want them (in the
    events' order); [] when no endpoint is active."""
    subscribed = endpoints.subscriptions()
    if not subscribed or not occurred:
        return []
    ids = list({e.message_id for e in occurred})
    # Plain SQL: this runs after every commit with events, on the writer thread of intake.
    facts = {
        row[0]: row[1:]
        for row in db.database.execute_sql(
            'SELECT "m"."id", "m"."account_id", "a"."username", "m"."mail_from", "m"."message_id_header" '
            'FROM "message" AS "m" JOIN "smtp_account" AS "a" ON "a"."id" = "m"."account_id" '
            f'WHERE "m"."id" IN ({db.marks(len(ids))}) AND "m"."direction" = {db.database.param}',
            (*ids, "outbound"),
        ).fetchall()
    }
    rows = []
    now = clock.now()
    for e in occurred:
        fact = facts.get(e.message_id)
        if fact is None:  # inbound mail, and the appliance's own (DSNs, notices): not the apps' mail
            continue
        account, username, mail_from, header = fact
        wanting = [s.id for s in subscribed if s.wants(e.type, account)]
        if not wanting:
            continue
        data = {
            "message_id": e.message_id,
            "recipient": e.recipient,
            "account": username,
            "from": mail_from,
            "message_id_header": header,
            "details": e.details,
        }
        payload = body(e.type, e.at, data)
        for webhook_id in wanting:
            rows.append(
                {
                    "webhook": webhook_id,
                    "message": e.message_id,
                    "event_type": e.type,
                    "msg_id": f"msg_{ULID()}",
                    "payload": payload,
                    "status": PENDING,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                }
            )
    return rows


def insert_pending(batches: list[list[dict[str, Any]]]) -> list[list[str]]:
    """Job kind of ``db.write_many``: insert the rows of several commits with one statement (rows of
    an endpoint deleted or turned off meanwhile are left out); return each batch's ``msg_id``s."""
    wanted = {r["webhook"] for batch in batches for r in batch}
    live = {i for (i,) in Webhook.select(Webhook.id).where(Webhook.id.in_(list(wanted)), Webhook.active).tuples()}
    kept = [[r for r in batch if r["webhook"] in live] for batch in batches]
    db.insert_rows(WebhookDelivery, [r for batch in kept for r in batch])
    return [[r["msg_id"] for r in batch] for batch in kept]


# -- claiming: a row is sent by one worker at a time, after the earlier events of its message ---------
_UNDONE = f"('{PENDING}', '{SENDING}')"
_EARLIER = (
    'NOT EXISTS (SELECT 1 FROM "webhook_delivery" AS "e" WHERE "e"."webhook_id" = "webhook_delivery"."webhook_id" '
    'AND "e"."message_id" = "webhook_delivery"."message_id" AND "e"."id" < "webhook_delivery"."id" '
    f'AND "e"."status" IN {_UNDONE})'
)
_ACTIVE = '"webhook_id" IN (SELECT "id" FROM "webhook" WHERE "active")'


def _due(p: str) -> str:
    return f'(("status" = {p} AND "next_attempt_at" <= {p}) OR ("status" = {p} AND "lease_until" < {p}))'


class Claimed(NamedTuple):
    id: int
    webhook_id: int
    msg_id: str
    payload: str
    attempts: int


def _take(lease_seconds: int, msg_ids: list[str]) -> list[Claimed]:
    now = clock.now()
    p, at = db.database.param, WebhookDelivery.next_attempt_at.db_value(now)
    lease = WebhookDelivery.lease_until.db_value(now + dt.timedelta(seconds=lease_seconds))
    cursor = db.database.execute_sql(
        f'UPDATE "webhook_delivery" SET "status" = {p}, "lease_until" = {p} '
        f'WHERE "msg_id" IN ({db.marks(len(msg_ids))}) AND {_due(p)} AND {_ACTIVE} AND {_EARLIER} '
        'RETURNING "id", "webhook_id", "msg_id", "payload", "attempts"',
        (SENDING, lease, *msg_ids, PENDING, at, SENDING, at),
    )
    return sorted((Claimed(*row) for row in cursor.fetchall()), key=lambda c: c.id)


def claim(msg_ids: list[str], lease_seconds: int) -> list[Claimed]:
    """Lease the rows among ``msg_ids`` that are due, of an active endpoint, with no earlier event of
    their message still waiting for that endpoint."""
    if not msg_ids:
        return []
    return db.write(functools.partial(_take, lease_seconds, msg_ids)).result()


def due(*, startup: bool = False, limit: int = 5000) -> list[str]:
    """The ``msg_id``s a sweep enqueues: rows due (or leased by a worker that is gone), each the
    first waiting event of its message for its endpoint. At start-up with SQLite (one process)
    every `sending` row is stale: it waits again, due now."""
    now = clock.now()
    if startup and db.is_sqlite():
        with db.atomic_write():
            WebhookDelivery.update(status=PENDING, lease_until=None, next_attempt_at=now).where(
                WebhookDelivery.status == SENDING
            ).execute()
    p, at = db.database.param, WebhookDelivery.next_attempt_at.db_value(now)
    cursor = db.database.execute_sql(
        f'SELECT "msg_id" FROM "webhook_delivery" WHERE {_due(p)} AND {_ACTIVE} AND {_EARLIER} ORDER BY "id" LIMIT {p}',
        (PENDING, at, SENDING, at, limit),
    )
    return [row[0] for row in cursor.fetchall()]


# -- one call ------------------------------------------------------------------------------------
class _PinnedHTTP(http.client.HTTPConnection):
    """An HTTP connection to the address the SSRF guard vetted, whatever the name resolves to now."""

    def __init__(self, where: endpoints.Target):
        super().__init__(where.host, where.port, timeout=TIMEOUT)
        self.address = where.address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPS(_PinnedHTTP):
    """The same over TLS, the certificate checked against the URL's host name."""

    default_port = 443

    def connect(self) -> None:
        super().connect()
        self.sock = ssl.create_default_context().wrap_socket(self.sock, server_hostname=self.host)


class Answer(NamedTuple):
    status_code: int | None  # None: no HTTP answer
    ok: bool
    excerpt: str
    duration_ms: int


def headers(secret: str, msg_id: str, payload: bytes, at: dt.datetime) -> dict[str, str]:
    """The Standard Webhooks headers of one call made at ``at``."""
    stamp = int(at.replace(tzinfo=dt.UTC).timestamp())
    signature = Signer(secret).sign(msg_id, dt.datetime.fromtimestamp(stamp, dt.UTC), payload)
    return {"webhook-id": msg_id, "webhook-timestamp": str(stamp), "webhook-signature": signature}


def call(settings: dict, url: str, secret: str, msg_id: str, payload: str) -> Answer:
    """POST one signed event to ``url``; a 2xx answer is a success (redirects are not followed)."""
    started = time.monotonic()

    def answer(code: int | None, excerpt: str) -> Answer:
        ok = code is not None and 200 <= code < 300
        return Answer(code, ok, excerpt[:EXCERPT], int((time.monotonic() - started) * 1000))

    try:
        where = endpoints.target(settings, url)
    except endpoints.WebhookError as exc:
        return answer(None, f"refused: {exc}")
    data = payload.encode()
    sent = {
        **headers(secret, msg_id, data, clock.now()),
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Connection": "close",
    }
    connection = (_PinnedHTTPS if where.scheme == "https" else _PinnedHTTP)(where)
    try:
        connection.request("POST", where.path, body=data, headers=sent)
        response = connection.getresponse()
        text = response.read(EXCERPT * 4).decode("utf-8", "replace").strip()
        return answer(response.status, text)
    except (OSError, http.client.HTTPException) as exc:  # refused, timed out, TLS, a broken answer
        return answer(None, f"no answer from {where.address}:{where.port}: {exc or type(exc).__name__}")
    finally:
        connection.close()


# -- the outcome of a call ---------------------------------------------------------------------------
class Next(NamedTuple):
    """A task a worker enqueues after a call: the row to send, and in how many seconds."""

    msg_id: str
    delay: float


def _finish(row: Claimed, got: Answer, at: dt.datetime) -> tuple[list[Next], Webhook | None]:
    """Record a call (inside the writer's transaction); return what to enqueue next and the endpoint
    if this call turned it off."""
    hook = Webhook.get_or_none(Webhook.id == row.webhook_id)
    if hook is None:  # deleted during the call: its rows are gone with it
        return [], None
    WebhookCall.create(
        delivery=row.id,
        webhook=row.webhook_id,
        at=at,
        status_code=got.status_code,
        duration_ms=got.duration_ms,
        ok=got.ok,
        excerpt=got.excerpt,
    )
    attempts = row.attempts + 1
    retry = not got.ok and attempts <= len(SCHEDULE)
    changes: dict[str, Any] = {"attempts": attempts, "lease_until": None}
    if retry:
        changes.update(status=PENDING, next_attempt_at=at + dt.timedelta(seconds=SCHEDULE[attempts - 1]))
    else:
        changes.update(status=DELIVERED if got.ok else FAILED, finished_at=at)
    WebhookDelivery.update(**changes).where(WebhookDelivery.id == row.id).execute()
    turned_off = None
    if got.ok:
        hook.failing_since, hook.last_success_at = None, at
    else:
        hook.failing_since = hook.failing_since or at
        if hook.active and at - hook.failing_since >= DISABLE_AFTER:
            hook.active = False
            hook.disabled_reason = (
                f"every call failed since {hook.failing_since:%Y-%m-%d %H:%M} UTC (the last: {got.excerpt or '-'})"
            )
            turned_off = hook
    hook.save()
    if retry:
        return [Next(row.msg_id, SCHEDULE[attempts - 1])], turned_off
    return _successor(row), turned_off


def _successor(row: Claimed) -> list[Next]:
    """The next waiting event of the same message for the same endpoint (its turn has come)."""
    current = WebhookDelivery.get_by_id(row.id)
    if current.message_id is None:
        return []
    following = (
        WebhookDelivery.select(WebhookDelivery.msg_id)
        .where(
            (WebhookDelivery.webhook == row.webhook_id)
            & (WebhookDelivery.message == current.message_id)
            & (WebhookDelivery.id > row.id)
            & (WebhookDelivery.status == PENDING)
        )
        .order_by(WebhookDelivery.id)
        .first()
    )
    return [Next(following.msg_id, 0)] if following else []


def deliver(settings: dict, msg_ids: list[str]) -> list[Next]:
    """Huey task body: call the endpoint of each row that can go now; return the tasks to enqueue."""
    follow: list[Next] = []
    hooks: dict[int, Webhook] = {}
    for row in claim(msg_ids, settings["LEASE_SECONDS"]):
        hook = hooks.get(row.webhook_id) or Webhook.get_or_none(Webhook.id == row.webhook_id)
        if hook is None:  # deleted meanwhile (its rows went with it)
            continue
        hooks[row.webhook_id] = hook
        at = clock.now()
        got = call(settings, hook.url, hook.secret, row.msg_id, row.payload)
        after, turned_off = db.write(functools.partial(_finish, row, got, at)).result()
        follow += after
        if turned_off is not None:
            endpoints.invalidate()
            alerts.raise_alert(
                settings,
                WEBHOOK_DISABLED,
                f"webhook {turned_off.id}",
                f"{turned_off.url} was turned off: {turned_off.disabled_reason}. Fix the receiver, then turn it "
                f"on again (dashboard Webhooks page, or `appliance webhooks enable {turned_off.id}`): the events "
                "waiting for it go out then.",
                alerts.CRITICAL,
            )
    return follow


# -- the admin's actions -------------------------------------------------------------------------------
def send_test(webhook_id: int | str) -> WebhookDelivery:
    """Record a test event for one endpoint (the caller enqueues its ``msg_id``)."""
    hook = endpoints.get(webhook_id)
    now = clock.now()
    payload = body(TEST, now, {"webhook": hook.id, "message": "This is a test event from the mail relay."})
    row = WebhookDelivery.create(
        webhook=hook, event_type=TEST, msg_id=f"msg_{ULID()}", payload=payload, next_attempt_at=now, created_at=now
    )
    audit.record("webhook.test", f"webhook {hook.id}", row.msg_id)
    return row


def replay(delivery_id: int | str) -> WebhookDelivery:
    """Send a failed (or still retrying) event again now, with a fresh retry schedule."""
    text = str(delivery_id).strip()
    row = WebhookDelivery.get_or_none(WebhookDelivery.id == int(text)) if text.isdigit() else None
    if row is None:
        raise endpoints.WebhookError(f"there is no webhook delivery {text}")
    if row.status == DELIVERED:
        raise endpoints.WebhookError(f"delivery {row.id} was delivered already: nothing to replay")
    if row.status == SENDING:
        raise endpoints.WebhookError(f"delivery {row.id} is being sent right now")
    now = clock.now()
    WebhookDelivery.update(status=PENDING, attempts=0, next_attempt_at=now, finished_at=None, lease_until=None).where(
        WebhookDelivery.id == row.id
    ).execute()
    audit.record("webhook.replay", f"webhook {row.webhook_id}", f"delivery {row.id} ({row.event_type})")
    return WebhookDelivery.get_by_id(row.id)


# -- what the endpoint's page shows ----------------------------------------------------------------------
def recent_calls(webhook_id: int, limit: int = 50) -> list[dict[str, Any]]:
    """The endpoint's latest calls, newest first, each with its delivery's event type and status."""
    rows = (
        WebhookCall.select(
            WebhookCall, WebhookDelivery.id, WebhookDelivery.event_type, WebhookDelivery.status, WebhookDelivery.message
        )
        .join(WebhookDelivery)
        .where(WebhookCall.webhook == webhook_id)
        .order_by(WebhookCall.at.desc(), WebhookCall.id.desc())
        .limit(limit)
    )
    return [
        {
            "id": c.id,
            "delivery": c.delivery_id,
            "event": c.delivery.event_type,
            "message_id": c.delivery.message_id,
            "delivery_status": c.delivery.status,
            "at": c.at,
            "status_code": c.status_code,
            "ok": c.ok,
            "duration_ms": c.duration_ms,
            "excerpt": c.excerpt,
        }
        for c in rows
    ]


def counts(webhook_ids: Iterable[int]) -> dict[int, dict[str, int]]:
    """Deliveries per endpoint and status."""
    found: dict[int, dict[str, int]] = {i: {PENDING: 0, SENDING: 0, DELIVERED: 0, FAILED: 0} for i in webhook_ids}
    if not found:
        return found
    rows = (
        WebhookDelivery.select(WebhookDelivery.webhook, WebhookDelivery.status, fn.COUNT(WebhookDelivery.id))
        .where(WebhookDelivery.webhook.in_(list(found)))
        .group_by(WebhookDelivery.webhook, WebhookDelivery.status)
        .tuples()
    )
    for webhook_id, status, n in rows:
        found[webhook_id][status] = n
    return found

"""Mail flow in figures: accepted messages and delivery outcomes per period, the queue's depth, and
the series the dashboard charts (the overview page and `appliance stats` read the same)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from peewee import SQL, fn

from . import analytics
from .db import database
from .models import (
    BOUNCED,
    DEFERRED,
    DELIVERED,
    FAILED,
    HELD,
    QUEUED,
    SENDING,
    SUPPRESSED,
    Delivery,
    Message,
)

PERIODS = {"today": "Today", "7d": "7 days", "30d": "30 days"}
OUTCOMES = (DELIVERED, DEFERRED, BOUNCED, FAILED, SUPPRESSED)
PROBLEMS = (DEFERRED, BOUNCED, FAILED)
WAITING = (QUEUED, SENDING, DEFERRED, HELD)


def period_start(period: str, now: dt.datetime) -> dt.datetime:
    """Return when ``period`` (a key of PERIODS) began: today's midnight, or 6 or 29 days before it."""
    midnight = dt.datetime.combine(now.date(), dt.time())
    return {"today": midnight, "7d": midnight - dt.timedelta(days=6), "30d": midnight - dt.timedelta(days=29)}[period]


def _of_account(query, account_id: int | None):
    """The deliveries of ``query`` that belong to one account's messages (None: everyone's)."""
    if account_id is None:
        return query
    return query.where(Delivery.message.in_(Message.select(Message.id).where(Message.account == account_id)))


def counts(since: dt.datetime, account_id: int | None = None) -> dict[str, int]:
    """Count messages accepted since ``since`` and deliveries per outcome last changed since then
    (of one account's mail, if ``account_id``)."""
    result = dict.fromkeys(("accepted", *OUTCOMES), 0)
    accepted = Message.select().where(Message.received_at >= since, Message.direction == "outbound")
    result["accepted"] = (accepted if account_id is None else accepted.where(Message.account == account_id)).count()
    rows = _of_account(
        Delivery.select(Delivery.status, fn.COUNT(Delivery.id)).where(
            Delivery.updated_at >= since, Delivery.status.in_(OUTCOMES)
        ),
        account_id,
    )
    result.update(dict(rows.group_by(Delivery.status).tuples()))
    return result


def queue_depth(account_id: int | None = None) -> dict[str, int]:
    """Count the deliveries waiting to go out, per status (queued, sending, deferred, held)."""
    rows = _of_account(
        Delivery.select(Delivery.status, fn.COUNT(Delivery.id)).where(Delivery.status.in_(WAITING)), account_id
    )
    return dict(rows.group_by(Delivery.status).tuples())


def summary(
    period: str,
    now: dt.datetime,
    *,
    account_id: int | None = None,
    stream: str | None = None,
    since: dt.datetime | None = None,
    own: bool = False,
) -> dict[str, Any]:
    """The figures of `appliance stats --json` and the API's ``/stats``: the period's accepted
    messages and outcomes and the queue now (the appliance's; ``own``: of ``account_id``'s mail
    alone), and the analytics of the messages received since ``since`` (default: the period's
    start), of one account or stream if asked. Times are datetimes, for each edge to write."""
    start = period_start(period, now)
    mine = account_id if own else None
    found = analytics.report(since or start, now, account_id=account_id, stream=stream)
    return {
        "period": period,
        "since": start,
        "counts": counts(start, mine),
        "queue": queue_depth(mine),
        "analytics": {
            "since": since or start,
            "account": account_id,
            "stream": stream,
            **found.total.as_dict(),
            "providers": {n: f.as_dict() for n, f in sorted(found.providers.items())},
            "top_links": [{"url": u, "clicks": n, "unique": k} for u, n, k in found.top_links],
        },
    }


def series(unit: str, since: dt.datetime) -> dict[tuple[str, dt.datetime], int]:
    """Count accepted messages, delivered and problem deliveries per ``unit`` ('hour' or 'day') since
    ``since``, keyed by (series name, start of the hour or day)."""
    found: dict[tuple[str, dt.datetime], int] = {}
    accepted = (
        Message.select(database.truncate_date(unit, Message.received_at), fn.COUNT(Message.id))
        .where(Message.received_at >= since)
        .group_by(SQL("1"))
        .tuples()
    )
    for when, n in accepted:
        found["accepted", when] = n
    outcomes = (
        Delivery.select(database.truncate_date(unit, Delivery.updated_at), Delivery.status, fn.COUNT(Delivery.id))
        .where(Delivery.updated_at >= since, Delivery.status.in_((DELIVERED, *PROBLEMS)))
        .group_by(SQL("1"), Delivery.status)
        .tuples()
    )
    for when, status, n in outcomes:
        name = "delivered" if status == DELIVERED else "problems"
        found[name, when] = found.get((name, when), 0) + n
    return found

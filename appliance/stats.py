"""Mail flow in figures: accepted messages and delivery outcomes per period, the queue's depth, and
the series the dashboard charts (the overview page and `appliance stats` read the same)."""

from __future__ import annotations

import datetime as dt

from peewee import SQL, fn

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


def counts(since: dt.datetime) -> dict[str, int]:
    """Count messages accepted since ``since`` and deliveries per outcome last changed since then."""
    result = dict.fromkeys(("accepted", *OUTCOMES), 0)
    result["accepted"] = Message.select().where(Message.received_at >= since, Message.direction == "outbound").count()
    rows = (
        Delivery.select(Delivery.status, fn.COUNT(Delivery.id))
        .where(Delivery.updated_at >= since, Delivery.status.in_(OUTCOMES))
        .group_by(Delivery.status)
        .tuples()
    )
    result.update(dict(rows))
    return result


def queue_depth() -> dict[str, int]:
    """Count the deliveries waiting to go out, per status (queued, sending, deferred, held)."""
    return dict(
        Delivery.select(Delivery.status, fn.COUNT(Delivery.id))
        .where(Delivery.status.in_(WAITING))
        .group_by(Delivery.status)
        .tuples()
    )


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

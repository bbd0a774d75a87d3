"""Overview (the index page): outcome counts per period, queue depth, charts, recent problems."""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, render_template, request
from peewee import SQL, fn

from .. import clock
from ..db import database
from ..models import (
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
    SmtpAccount,
)
from .charts import Bucket, bar_chart
from .permissions import viewer_required

bp = Blueprint("overview", __name__)

PERIODS = {"today": "Today", "7d": "7 days", "30d": "30 days"}
OUTCOMES = (DELIVERED, DEFERRED, BOUNCED, FAILED, SUPPRESSED)
PROBLEMS = (DEFERRED, BOUNCED, FAILED)
SERIES = ("accepted", "delivered", "problems")


def period_start(period: str, now: dt.datetime) -> dt.datetime:
    midnight = dt.datetime.combine(now.date(), dt.time())
    return {"today": midnight, "7d": midnight - dt.timedelta(days=6), "30d": midnight - dt.timedelta(days=29)}[period]


def counts(since: dt.datetime) -> dict[str, int]:
    """Count messages accepted since ``since`` and deliveries per outcome last changed since then."""
    result = dict.fromkeys(("accepted", *OUTCOMES), 0)
    result["accepted"] = Message.select().where(Message.received_at >= since,
                                                Message.direction == "outbound").count()
    rows = (Delivery.select(Delivery.status, fn.COUNT(Delivery.id))
            .where(Delivery.updated_at >= since, Delivery.status.in_(OUTCOMES))
            .group_by(Delivery.status).tuples())
    result.update(dict(rows))
    return result


def _series(unit: str, since: dt.datetime) -> dict[tuple[str, dt.datetime], int]:
    found: dict[tuple[str, dt.datetime], int] = {}
    accepted = (Message.select(database.truncate_date(unit, Message.received_at), fn.COUNT(Message.id))
                .where(Message.received_at >= since).group_by(SQL("1")).tuples())
    for when, n in accepted:
        found["accepted", when] = n
    outcomes = (Delivery.select(database.truncate_date(unit, Delivery.updated_at), Delivery.status,
                                fn.COUNT(Delivery.id))
                .where(Delivery.updated_at >= since, Delivery.status.in_((DELIVERED, *PROBLEMS)))
                .group_by(SQL("1"), Delivery.status).tuples())
    for when, status, n in outcomes:
        name = "delivered" if status == DELIVERED else "problems"
        found[name, when] = found.get((name, when), 0) + n
    return found


def chart(unit: str, now: dt.datetime):
    """Draw the last 24 hours (unit 'hour') or the last 30 days (unit 'day')."""
    if unit == "hour":
        last = now.replace(minute=0, second=0, microsecond=0)
        starts = [last - dt.timedelta(hours=i) for i in range(23, -1, -1)]
        label, every, title = "%H:00", 3, "Last 24 hours, per hour"
    else:
        last = dt.datetime.combine(now.date(), dt.time())
        starts = [last - dt.timedelta(days=i) for i in range(29, -1, -1)]
        label, every, title = "%m-%d", 5, "Last 30 days, per day"
    found = _series(unit, starts[0])
    buckets = [Bucket(s.strftime(label), {name: found.get((name, s), 0) for name in SERIES}) for s in starts]
    return bar_chart(buckets, SERIES, title, label_every=every)


@bp.get("/")
@viewer_required
def overview_show():
    """Show how mail is flowing and what needs attention."""
    now = clock.now()
    period = request.args.get("period", "today")
    if period not in PERIODS:
        period = "today"
    queue = dict(Delivery.select(Delivery.status, fn.COUNT(Delivery.id))
                 .where(Delivery.status.in_((QUEUED, SENDING, DEFERRED, HELD)))
                 .group_by(Delivery.status).tuples())
    problems = list(Delivery.select()
                    .where(Delivery.status.in_(PROBLEMS))
                    .order_by(Delivery.updated_at.desc()).limit(10))
    login_failures = list(SmtpAccount.select()
                          .where(SmtpAccount.last_failure_at >= now - dt.timedelta(days=1))
                          .order_by(SmtpAccount.last_failure_at.desc()).limit(10))
    return render_template(
        "overview/show.html", periods=PERIODS, period=period,
        counts=counts(period_start(period, now)), queue=queue, queue_depth=sum(queue.values()),
        chart_day=chart("hour", now), chart_month=chart("day", now), problems=problems,
        login_failures=login_failures, has_accounts=SmtpAccount.select().exists(),
        has_messages=Message.select().exists(),
    )

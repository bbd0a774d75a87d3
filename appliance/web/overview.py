"""Overview (the index page): outcome counts per period, queue depth, charts, recent problems."""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, current_app, render_template, request

from .. import checklist, clock, retention, stats
from ..models import Delivery, Message, SmtpAccount
from ..stats import PERIODS, PROBLEMS
from .charts import Bucket, bar_chart
from .permissions import viewer_required

bp = Blueprint("overview", __name__)

SERIES = ("accepted", "delivered", "problems")


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
    found = stats.series(unit, starts[0])
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
    queue = stats.queue_depth()
    problems = list(
        Delivery.select().where(Delivery.status.in_(PROBLEMS)).order_by(Delivery.updated_at.desc()).limit(10)
    )
    login_failures = list(
        SmtpAccount.select()
        .where(SmtpAccount.last_failure_at >= now - dt.timedelta(days=1))
        .order_by(SmtpAccount.last_failure_at.desc())
        .limit(10)
    )
    return render_template(
        "overview/show.html",
        periods=PERIODS,
        period=period,
        counts=stats.counts(stats.period_start(period, now)),
        queue=queue,
        queue_depth=sum(queue.values()),
        chart_day=chart("hour", now),
        chart_month=chart("day", now),
        problems=problems,
        login_failures=login_failures,
        has_accounts=SmtpAccount.select().exists(),
        has_messages=Message.select().exists(),
        storage=storage(current_app.config),
        setup_left=sum(not step.done for step in checklist.steps(current_app.config)),
    )


def storage(settings) -> dict:
    """The database's size and the free disk of DATA_DIR, in MiB, and whether that is low."""
    free = retention.free_disk(settings)
    threshold = settings["DISK_ALERT_FREE_MB"] * 1024 * 1024
    return {
        "database_mib": retention.database_size(settings) / (1024 * 1024),
        "free_mib": free / (1024 * 1024),
        "low": threshold > 0 and free < threshold,
        "threshold_mib": settings["DISK_ALERT_FREE_MB"],
        "body_days": settings["RETENTION_BODY_DAYS"],
        "days": settings["RETENTION_DAYS"],
    }

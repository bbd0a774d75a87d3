"""Analytics: sent, delivered, bounced, complained, opened, clicked, unsubscribed per stream and account for a
date range, human rates, charts by hour and by day, top links, the same per provider; CSV export."""

from __future__ import annotations

import csv
import datetime as dt
import io

from flask import Blueprint, Response, render_template, request

from .. import analytics, clock
from ..models import SmtpAccount
from ..policy import acceptance
from .charts import Bucket, bar_chart
from .permissions import viewer_required

bp = Blueprint("analytics", __name__, url_prefix="/analytics")

DEFAULT_DAYS = 30


def parse_filters(args) -> tuple[dict, dict[str, str]]:
    """Read the form: account, stream, from day, to day (both included; default the last 30 days)."""
    errors: dict[str, str] = {}
    today = clock.now().date()
    days: dict[str, dt.date] = {}
    for key, default in (("since", today - dt.timedelta(days=DEFAULT_DAYS - 1)), ("until", today)):
        text = args.get(key, "").strip()
        try:
            days[key] = dt.date.fromisoformat(text) if text else default
        except ValueError:
            errors[key] = "Use a date like 2025-01-31."
            days[key] = default
    if days["since"] > days["until"]:
        errors["until"] = "The last day comes after the first."
    account = args.get("account", "").strip()
    if account and not account.isdigit():
        errors["account"] = "Pick an account from the list."
        account = ""
    stream = args.get("stream", "").strip()
    if stream and stream not in acceptance.STREAMS:
        errors["stream"] = "Pick transactional or broadcast."
        stream = ""
    return {"since": days["since"], "until": days["until"], "account": account, "stream": stream}, errors


def report_for(filters: dict) -> analytics.Report:
    since = dt.datetime.combine(filters["since"], dt.time())
    until = dt.datetime.combine(filters["until"] + dt.timedelta(days=1), dt.time())
    # The charts end at the range's end, or now when the range runs into today.
    account_id = int(filters["account"]) if filters["account"] else None
    return analytics.report(since, min(until, clock.now()), account_id=account_id, stream=filters["stream"] or None)


@bp.get("/")
@viewer_required
def analytics_show():
    """Show the figures of the messages received in the chosen days."""
    filters, errors = parse_filters(request.args)
    found = report_for(filters)
    series = analytics.CHARTED
    hourly = bar_chart(
        [Bucket(h.strftime("%H:00"), v) for h, v in found.hourly],
        series,
        "Last 24 hours, per hour (human opens and clicks)",
        label_every=3,
    )
    daily = bar_chart(
        [Bucket(d.strftime("%m-%d"), v) for d, v in found.daily],
        series,
        "Last 30 days, per day (human opens and clicks)",
        label_every=5,
    )
    accounts = SmtpAccount.select().order_by(SmtpAccount.name)
    query = {k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in filters.items() if v}
    return render_template(
        "analytics/show.html",
        report=found,
        total=found.total.as_dict(),
        providers={n: f.as_dict() for n, f in sorted(found.providers.items())},
        chart_hourly=hourly,
        chart_daily=daily,
        filters=filters,
        errors=errors,
        accounts=accounts,
        streams=acceptance.STREAMS,
        metrics=analytics.METRICS,
        query=query,
    ), 400 if errors else 200


@bp.get("/export.csv")
@viewer_required
def analytics_export():
    """The same figures as CSV: totals, one row per provider, one per day."""
    filters, errors = parse_filters(request.args)
    if errors:
        return Response("; ".join(f"{k}: {v}" for k, v in errors.items()) + "\n", 400, mimetype="text/plain")
    out = io.StringIO()
    csv.writer(out).writerows(analytics.csv_rows(report_for(filters)))
    name = f"analytics-{filters['since']}-{filters['until']}.csv"
    return Response(
        out.getvalue(), mimetype="text/csv", headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )

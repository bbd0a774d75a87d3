"""DMARC: per domain and day, who sent as the domain according to the mailbox providers' aggregate
reports (docs/dmarc.md), and each stored report."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, render_template, request

from .. import dmarc
from .permissions import viewer_required

bp = Blueprint("dmarc", __name__, url_prefix="/dmarc")

PERIODS = (7, 30, 90)


@bp.get("/")
@viewer_required
def dmarc_index():
    """The sources of each domain and day over the last 7, 30 or 90 days, failing ones first."""
    domain = request.args.get("domain", "").strip().lower()
    period = request.args.get("days", "30")
    days = int(period) if period in {str(p) for p in PERIODS} else 30
    return render_template(
        "dmarc/index.html",
        groups=dmarc.days(current_app.config, domain, days),
        reports=dmarc.listing(domain, limit=50),
        domains=dmarc.reported_domains(),
        domain=domain,
        days=days,
        periods=PERIODS,
        address=dmarc.address(current_app.config["HOSTNAME"]),
    )


@bp.get("/reports/<int:report_id>")
@viewer_required
def dmarc_report(report_id: int):
    """One report as it was received: its reporter, period, published policy and records."""
    report = dmarc.detail(report_id)
    if report is None:
        abort(404)
    return render_template("dmarc/report.html", report=report)

"""The alert center: open alerts (with a count in the menu), acknowledge one or all."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user

from .. import alerts, audit
from .permissions import admin_required, viewer_required

bp = Blueprint("alerts", __name__, url_prefix="/alerts")


@bp.app_context_processor
def _open_alerts() -> dict:
    """Give every page the number of open alerts, for the badge in the menu."""
    if not current_user.is_authenticated:
        return {}
    return {"open_alerts": alerts.open_count()}


@bp.get("/")
@viewer_required
def alerts_list():
    """List open alerts, most recent first (all of them with ?all=1)."""
    everything = request.args.get("all") == "1"
    return render_template(
        "alerts/list.html", rows=alerts.listed(include_acknowledged=everything), everything=everything
    )


@bp.post("/<int:alert_id>/ack")
@admin_required
def alerts_ack(alert_id: int):
    """Acknowledge one alert: a repeat opens a new one."""
    if alerts.acknowledge([alert_id], current_user.email):
        audit.record("alert.acknowledge", f"alert {alert_id}")
    return redirect(url_for("alerts.alerts_list"))


@bp.post("/ack")
@admin_required
def alerts_ack_all():
    """Acknowledge every open alert."""
    count = alerts.acknowledge(None, current_user.email)
    if count:
        audit.record("alert.acknowledge", "every open alert", f"{count} alert(s)")
    flash(f"{count} alert{'s' if count != 1 else ''} acknowledged.")
    return redirect(url_for("alerts.alerts_list"))

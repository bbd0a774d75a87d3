"""Campaigns: create, rename, change the subject, archive; each one's figures, in all and per day
(docs/campaigns-and-lists.md)."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for

from .. import campaigns, lists
from .lists import daily_chart
from .permissions import admin_required, viewer_required

bp = Blueprint("campaigns", __name__, url_prefix="/campaigns")


@bp.get("/")
@viewer_required
def campaigns_index():
    return _index(None, "", "")


def _index(error: str | None, name: str, subject: str):
    found = campaigns.listed()
    counted = campaigns.figures(campaigns.CAMPAIGN, [c.id for c in found])
    rows = [campaigns.describe(c, counted[c.id]) for c in found]
    page = render_template(
        "campaigns/index.html", rows=rows, figures=campaigns.FIGURES, error=error, name=name, subject=subject
    )
    return (page, 400) if error else page


@bp.post("/")
@admin_required
def campaigns_create():
    name, subject = request.form.get("name", ""), request.form.get("subject", "")
    try:
        row = campaigns.create(name, subject or None)
    except campaigns.CampaignError as exc:
        return _index(f"{exc}.", name, subject)
    flash(f"Campaign {row.name!r} made: apps put {row.id} in campaign_guid.")
    return redirect(url_for("campaigns.campaigns_show", campaign_id=row.id))


@bp.get("/<campaign_id>")
@viewer_required
def campaigns_show(campaign_id: str):
    try:
        row = campaigns.find(campaign_id)
    except campaigns.CampaignError:
        abort(404)
    return render_template(
        "campaigns/show.html",
        row=campaigns.describe(row),
        lists=lists.listed(),
        figures=campaigns.FIGURES,
        chart=daily_chart(campaigns.CAMPAIGN, row.id, "Per day: sent, delivered, opened, clicked"),
    )


@bp.post("/<campaign_id>")
@admin_required
def campaigns_change(campaign_id: str):
    """Rename (``name``), change the subject (``subject``) or the connected list (``list``), archive or
    bring back (``archived``)."""
    form = request.form
    try:
        if "name" in form:
            campaigns.rename(campaign_id, form["name"])
        if "subject" in form:
            campaigns.set_subject(campaign_id, form["subject"])
        if "list" in form:
            campaigns.connect(campaign_id, form["list"])
        if "archived" in form:
            campaigns.archive(campaign_id, form["archived"] == "1")
        flash("Campaign saved.")
    except campaigns.CampaignError as exc:
        flash(f"{exc}.")
    return redirect(url_for("campaigns.campaigns_show", campaign_id=campaign_id))

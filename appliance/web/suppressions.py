"""Suppressions: addresses the relay never sends to (bounced mailboxes, complaints, manual)."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for

from .. import audit
from ..models import Suppression
from ..policy import acceptance
from .permissions import admin_required, viewer_required

bp = Blueprint("suppressions", __name__, url_prefix="/suppressions")

PAGE_SIZE = 100


@bp.get("/")
@viewer_required
def suppressions_list():
    """List suppressed addresses, newest first; search by address or domain."""
    q = request.args.get("q", "").strip().lower()
    query = Suppression.select().order_by(Suppression.created_at.desc(), Suppression.id.desc())
    if q:
        query = query.where(Suppression.address.contains(q))
    return render_template("suppressions/list.html", rows=list(query.limit(PAGE_SIZE)), q=q,
                           total=Suppression.select().count(), error=None, address="", reason="")


@bp.post("/")
@admin_required
def suppressions_create():
    """Suppress an address so no message is sent to it."""
    address = request.form.get("address", "")
    reason = request.form.get("reason", "").strip()
    error = None
    try:
        address = acceptance.suppression_address(address)
    except ValueError as exc:
        error = f"{exc}. Write a whole e-mail address, like bob@example.com."
    else:
        if Suppression.select().where(Suppression.every_stream(address)).exists():
            error = f"{address} is already suppressed."
    if error:
        rows = list(Suppression.select().order_by(Suppression.created_at.desc()).limit(PAGE_SIZE))
        return render_template("suppressions/list.html", rows=rows, q="", total=Suppression.select().count(),
                               error=error, address=request.form.get("address", ""), reason=reason), 400
    Suppression.create(address=address, reason=reason or "added by an admin", source="manual")
    audit.record("suppression.add", f"address {address}", reason)
    flash(f"{address} is suppressed: messages to it are recorded but not sent.")
    return redirect(url_for("suppressions.suppressions_list"))


@bp.post("/<int:suppression_id>/delete")
@admin_required
def suppressions_delete(suppression_id: int):
    """Remove an address from the suppression list."""
    row = Suppression.get_or_none(Suppression.id == suppression_id)
    if row is not None:
        row.delete_instance()
        audit.record("suppression.remove", f"address {row.address}")
        flash(f"{row.address} is no longer suppressed.")
    return redirect(url_for("suppressions.suppressions_list"))

"""Suppressions: addresses the relay never sends to (bounced mailboxes, complaints, manual)."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for

from .. import suppressions
from .permissions import admin_required, viewer_required

bp = Blueprint("suppressions", __name__, url_prefix="/suppressions")

PAGE_SIZE = 100


@bp.get("/")
@viewer_required
def suppressions_list():
    """List suppressed addresses, newest first; search by address or domain."""
    q = request.args.get("q", "").strip().lower()
    return render_template(
        "suppressions/list.html",
        rows=suppressions.search(q, PAGE_SIZE),
        q=q,
        total=suppressions.count(),
        error=None,
        address="",
        reason="",
    )


@bp.post("/")
@admin_required
def suppressions_create():
    """Suppress an address so no message is sent to it."""
    address = request.form.get("address", "")
    reason = request.form.get("reason", "")
    try:
        row = suppressions.add(address, reason)
    except suppressions.SuppressionError as exc:
        error = f"{exc}."
        return render_template(
            "suppressions/list.html",
            rows=suppressions.search(limit=PAGE_SIZE),
            q="",
            total=suppressions.count(),
            error=error,
            address=address,
            reason=reason,
        ), 400
    flash(f"{row.address} is suppressed: messages to it are recorded but not sent.")
    return redirect(url_for("suppressions.suppressions_list"))


@bp.post("/<int:suppression_id>/delete")
@admin_required
def suppressions_delete(suppression_id: int):
    """Remove an address from the suppression list."""
    row = suppressions.remove_by_id(suppression_id)
    if row is not None:
        flash(f"{row.address} is no longer suppressed.")
    return redirect(url_for("suppressions.suppressions_list"))

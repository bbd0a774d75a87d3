"""Test my setup: a check address to send a message to, and the page with its grade.

Making a check address takes a signed-in admin; its result page is reachable by its signed link
alone (the token in it names no database row), so the person who sends the test message, a
developer of the shop's app say, can read the result without a dashboard login."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, redirect, render_template, url_for

from .. import checker
from .permissions import admin_required, public, viewer_required

bp = Blueprint("checker", __name__, url_prefix="/check")
NO_STORE = {"Cache-Control": "no-store, private", "Referrer-Policy": "no-referrer"}


def _shown(token: str) -> dict:
    try:
        return checker.show(current_app.config, token)
    except checker.CheckError:
        abort(404)


@bp.get("/")
@viewer_required
def checker_index():
    """What a check does, and the button that makes a check address."""
    return render_template(
        "checker/index.html",
        checks=checker.recent(current_app.config),
        expires_hours=int(checker.EXPIRES.total_seconds() // 3600),
    )


@bp.post("/")
@admin_required
def checker_create():
    """Make a check address and open its result page (which waits for the message)."""
    _, token = checker.new(current_app.config)
    return redirect(url_for("checker.checker_result", token=token))


@bp.get("/<token>")
@public
def checker_result(token: str):
    """The check's page: its address while it waits, then the grade and the findings."""
    return render_template("checker/result.html", shown=_shown(token)), 200, NO_STORE


@bp.get("/<token>/findings")
@public
def checker_findings(token: str):
    """The result fragment, which the page polls while the message has not arrived."""
    return render_template("checker/_result.html", shown=_shown(token)), 200, NO_STORE

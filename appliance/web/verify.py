"""The public end of sender verification: the signed, expiring link mailed to a new sender."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template

from .. import senders
from .permissions import public

bp = Blueprint("verify", __name__, url_prefix="/verify")


@bp.get("/<token>")
@public
def verify_show(token: str):
    """Verify the sender the link names (no login: the signed link is the proof), and say so."""
    try:
        sender = senders.verify_token(current_app.config, token)
    except senders.SenderError as exc:
        return render_template("verify/show.html", sender=None, error=str(exc)), 400
    return render_template("verify/show.html", sender=sender, error=None)

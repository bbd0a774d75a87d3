"""The public end of sender verification: the signed, expiring link mailed to a new sender.

Opening the link shows a button; only its POST verifies. Mail filters and link scanners that fetch
every link in a message (a GET) then verify nothing on the owner's behalf. Once verified, the
sender's link mails still waiting in the queue (a resend, a deferred first one) are cancelled."""

from __future__ import annotations

from flask import Blueprint, current_app, redirect, render_template, request, url_for

from .. import queue, senders
from .permissions import public

bp = Blueprint("verify", __name__, url_prefix="/verify")


@bp.route("/<token>", methods=["GET", "POST"])
@public
def verify_show(token: str):
    """Show whom the link verifies, with the button (no login: the signed link is the proof); verify on POST."""
    try:
        if request.method == "POST":
            sender = senders.verify_token(current_app.config, token)
            queue.cancel(senders.pending_links(sender), by="sender verified")  # a resent link, still queued
            return redirect(url_for("verify.verify_show", token=token), 303)  # a reload repeats nothing
        sender = senders.sender_for_token(current_app.config, token)
    except senders.SenderError as exc:
        return render_template("verify/show.html", sender=None, error=str(exc)), 400
    return render_template("verify/show.html", sender=sender, error=None)

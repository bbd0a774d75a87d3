"""The public tracking endpoints: the open pixel, tracked links, and the unsubscribe link (RFC 8058).

No login: the signed token in the link is the proof. A token that does not verify gets 404 and
records nothing; a click is redirected only to the URL its token signs (never an open redirect).
The one-click POST needs no CSRF token (mailbox providers send it, RFC 8058 §3.2); a GET changes
nothing, because link scanners fetch every link of a message.
"""

from __future__ import annotations

import base64

from flask import Blueprint, abort, current_app, redirect, render_template, request

from .. import engagement
from .permissions import public

bp = Blueprint("tracking", __name__, url_prefix="/t")

# A transparent 1×1 GIF.
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_STORE = {"Cache-Control": "no-store, private", "Referrer-Policy": "no-referrer"}


def _agent() -> str:
    return request.headers.get("User-Agent", "")


@bp.get("/o/<token>.gif")
@public
def tracking_open(token: str):
    """Record an open and answer the pixel."""
    if not engagement.opened(current_app.config, token, request.remote_addr or "", _agent()):
        abort(404)
    return PIXEL, 200, {"Content-Type": "image/gif", **NO_STORE}


@bp.get("/c/<token>")
@public
def tracking_click(token: str):
    """Record a click and send the reader on to the link's own URL."""
    url = request.args.get("u", "")
    if not url or not engagement.clicked(current_app.config, token, url, request.remote_addr or "", _agent()):
        abort(404)
    return redirect(url, 302), NO_STORE


@bp.get("/u/<token>")
@public
def tracking_unsubscribe_show(token: str):
    """Ask the reader to confirm with a button; nothing changes yet."""
    found = engagement.recipient(current_app.config, "u", token)
    if found is None:
        abort(404)
    return render_template("tracking/unsubscribe.html", found=found, done=False), 200, NO_STORE


@bp.post("/u/<token>")
@public
def tracking_unsubscribe(token: str):
    """Unsubscribe: the RFC 8058 one-click POST (``List-Unsubscribe=One-Click``) or the page's button."""
    one_click = request.form.get("List-Unsubscribe") == "One-Click"
    found = engagement.unsubscribe(current_app.config, token, "one-click" if one_click else "page")
    if found is None:
        abort(404)
    return render_template("tracking/unsubscribe.html", found=found, done=True), 200, NO_STORE

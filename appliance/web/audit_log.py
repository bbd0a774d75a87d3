"""The audit log page: who changed what, newest first, in keyset pages."""

from __future__ import annotations

from flask import Blueprint, render_template, request

from .. import audit
from .permissions import viewer_required

bp = Blueprint("audit_log", __name__, url_prefix="/audit")


@bp.get("/")
@viewer_required
def audit_list():
    """List audit entries, newest first; ``before`` (an entry id) gives the older page."""
    before = request.args.get("before", "")
    rows, older = audit.page(int(before) if before.isdigit() else None)
    return render_template("audit/list.html", rows=rows, older=older, first=not before.isdigit())

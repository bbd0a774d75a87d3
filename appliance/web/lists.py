"""Lists: create, tie accounts, import members from CSV in a worker (with a progress bar that updates
itself), export, search members and see each one's history (docs/campaigns-and-lists.md)."""

from __future__ import annotations

from flask import Blueprint, Response, abort, current_app, flash, redirect, render_template, request, url_for

from .. import accounts, campaigns, lists, queue
from ..models import MEMBER_STATUSES, Delivery, Event, ListMember, Message, SmtpAccount
from .charts import Bucket, bar_chart
from .permissions import admin_required, viewer_required

bp = Blueprint("lists", __name__, url_prefix="/lists")

MEMBERS_SHOWN = 200
HISTORY = 200  # a member's messages and events shown, the latest
CHARTED = ("sent", "delivered", "opened", "clicked")


def _accounts() -> list[SmtpAccount]:
    return list(SmtpAccount.select().order_by(SmtpAccount.name))


def daily_chart(kind: str, group: str, title: str):
    days = campaigns.daily(kind, group)
    if not days:
        return None
    buckets = [Bucket(d["day"][5:], {k: d[k] for k in CHARTED}) for d in days]
    return bar_chart(buckets, CHARTED, title, label_every=max(1, len(buckets) // 10))


@bp.get("/")
@viewer_required
def lists_index():
    return _index(None, "", [])


def _index(error: str | None, name: str, chosen: list[str]):
    rows = lists.describe(lists.listed(), campaigns.figures)
    page = render_template(
        "lists/index.html",
        rows=rows,
        accounts=_accounts(),
        error=error,
        name=name,
        chosen=chosen,
        domain=current_app.config["LISTS_DOMAIN"],
    )
    return (page, 400) if error else page


@bp.post("/")
@admin_required
def lists_create():
    name = request.form.get("name", "")
    chosen = request.form.getlist("accounts")
    tied = [a for a in (accounts.find(ref) for ref in chosen) if a is not None]
    try:
        row = lists.create(name, tied)
    except lists.ListError as exc:
        return _index(f"{exc}.", name, chosen)
    flash(f"List {row.name!r} made: apps put {row.id} in mailing_list_id.")
    return redirect(url_for("lists.lists_show", list_id=row.id))


def _found(list_id: str):
    try:
        return lists.find(list_id)
    except lists.ListError:
        abort(404)


@bp.get("/<list_id>")
@viewer_required
def lists_show(list_id: str):
    row = _found(list_id)
    (shown,) = lists.describe([row], campaigns.figures)
    status = request.args.get("status", "")
    q = request.args.get("q", "")
    try:
        members = lists.members(row.id, status=status, search=q, limit=MEMBERS_SHOWN)
    except lists.ListError:
        abort(400)
    return render_template(
        "lists/show.html",
        row=shown,
        members=members,
        statuses=MEMBER_STATUSES,
        status=status,
        q=q,
        shown=MEMBERS_SHOWN,
        accounts=_accounts(),
        figures=campaigns.FIGURES,
        chart=daily_chart(lists.LIST, row.id, "Per day: sent, delivered, opened, clicked"),
        address=f"{row.id}@{current_app.config['LISTS_DOMAIN']}",
    )


@bp.get("/<list_id>/members/<path:email>")
@viewer_required
def lists_member(list_id: str, email: str):
    """A member's status and history: the list's messages to it and their events, newest first."""
    row = _found(list_id)
    member = ListMember.get_or_none(ListMember.list == row.id, ListMember.email == email.lower())
    if member is None:
        abort(404)
    sent = (
        Delivery.select(Delivery.status, Delivery.message, Message.subject, Message.received_at)
        .join(Message)
        .where(Message.mailing_list == row.id, Delivery.rcpt == member.email)
        .order_by(Message.received_at.desc())
        .limit(HISTORY)
        .tuples()
    )
    history = (
        Event.select(Event.at, Event.type, Event.message)
        .join(Message)
        .where(Message.mailing_list == row.id, Event.recipient == member.email)
        .order_by(Event.at.desc(), Event.id.desc())
        .limit(HISTORY)
        .tuples()
    )
    return render_template("lists/member.html", row=row, member=member, sent=list(sent), history=list(history))


@bp.post("/<list_id>/import")
@admin_required
def lists_import(list_id: str):
    """Hand the uploaded CSV file to a worker; its page shows the progress."""
    row = _found(list_id)
    upload = request.files.get("file")
    data = upload.read() if upload else b""
    if not data:
        flash("Choose a CSV file with an email column to import.")
        return redirect(url_for("lists.lists_show", list_id=row.id))
    job = queue.start_import(queue.runtime(current_app.config), row.id, data)
    return redirect(url_for("lists.lists_import_page", list_id=row.id, job=job))


def _state(list_id: str, job: str) -> dict:
    state = queue.import_state(queue.runtime(current_app.config), job)
    if state is None or state["list"] != list_id:
        abort(404)
    return state


@bp.get("/<list_id>/imports/<job>")
@viewer_required
def lists_import_page(list_id: str, job: str):
    row = _found(list_id)
    _state(row.id, job)
    return render_template("lists/import.html", row=row, job=job)


@bp.get("/<list_id>/imports/<job>/progress")
@viewer_required
def lists_import_progress(list_id: str, job: str):
    """The progress bar (htmx polls it until the import is done; then it comes without the poll)."""
    row = _found(list_id)
    return render_template("lists/_progress.html", row=row, job=job, state=_state(row.id, job))


@bp.get("/<list_id>/export")
@viewer_required
def lists_export(list_id: str):
    row = _found(list_id)
    return Response(
        lists.export_csv(row.id),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="list-{row.id}.csv"'},
    )


@bp.post("/<list_id>/accounts")
@admin_required
def lists_tie(list_id: str):
    """Tie (``action`` tie) or untie an account."""
    row = _found(list_id)
    account = accounts.find(request.form.get("account", ""))
    if account is None:
        flash("Choose an SMTP account.")
        return redirect(url_for("lists.lists_show", list_id=row.id))
    try:
        if request.form.get("action") == "untie":
            lists.untie(row.id, account)
            flash(f"{account.username} is no longer tied to this list.")
        else:
            lists.tie(row.id, account)
            flash(f"{account.username} is tied to this list: it may send to the list address.")
    except lists.ListError as exc:
        flash(f"{exc}.")
    return redirect(url_for("lists.lists_show", list_id=row.id))

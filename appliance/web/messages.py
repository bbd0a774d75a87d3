"""Message log pages: the search and a message's detail (appliance/message_log.py), its headers, queue actions."""

from __future__ import annotations

from flask import Blueprint, Response, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from .. import audit, message_log, queue
from ..message_bytes import MalformedMessage, parse_header_block
from ..models import DEFERRED, HELD, QUEUED, Delivery, Message, MessageBody, SmtpAccount
from . import smtp_codes
from .permissions import admin_required, viewer_required

bp = Blueprint("messages", __name__, url_prefix="/messages")

PAGE_SIZE = 50


def _accounts() -> dict[int, SmtpAccount]:
    return {a.id: a for a in SmtpAccount.select(SmtpAccount.id, SmtpAccount.name).order_by(SmtpAccount.name)}


@bp.get("/")
@viewer_required
def messages_list():
    """Search the message log; htmx polling asks for the table fragment only."""
    filters, errors = message_log.parse_filters(request.args)
    cursor = request.args.get("after") or None
    page = message_log.search(filters, cursor, PAGE_SIZE)
    context = {
        "page": page,
        "filters": filters,
        "errors": errors,
        "cursor": cursor,
        "recipients": page.recipients,
        "accounts": _accounts(),
        "statuses": message_log.STATUSES,
        "any_message": bool(page.messages or filters or cursor) or Message.select().exists(),
    }
    if request.headers.get("HX-Request"):
        return render_template("messages/_table.html", **context)
    return render_template("messages/list.html", **context)


def _get(message_id: str) -> Message:
    message = message_log.find(message_id)
    if message is None:
        abort(404)
    return message


# The page shows this much of a message's header section at most: a message stored with a huge
# header (before MAX_HEADER_SIZE, or through the CLI) must not make a page of megabytes.
HEADER_BYTES_SHOWN = 64 * 1024
HEADER_FIELDS_SHOWN = 200
HEADER_VALUE_SHOWN = 2000


def _headers(message: Message) -> tuple[list[tuple[str, str]], int, bool]:
    """Return the header fields to show (values cut to HEADER_VALUE_SHOWN characters), how
    many more fields the message has than are shown (at least 1 when the header section was cut),
    and whether the body is still stored (retention purges it after RETENTION_BODY_DAYS)."""
    body = MessageBody.get_or_none(MessageBody.message == message.id)
    if body is None:
        return [], 0, False
    data = bytes(body.data[: HEADER_BYTES_SHOWN + 4])
    end = data.find(b"\r\n\r\n")
    cut = end < 0 and len(body.data) > HEADER_BYTES_SHOWN
    if cut:  # keep whole lines only
        data = data[: data.rfind(b"\r\n", 0, HEADER_BYTES_SHOWN) + 2]
    try:
        fields = parse_header_block(data)[0]
    except MalformedMessage:
        return [], 0, True
    shown = [
        (name, value if len(value) <= HEADER_VALUE_SHOWN else value[:HEADER_VALUE_SHOWN] + " …")
        for name, value in fields[:HEADER_FIELDS_SHOWN]
    ]
    return shown, len(fields) - len(shown) or int(cut), True


@bp.get("/<message_id>")
@viewer_required
def messages_show(message_id: str):
    """Show a message's envelope, headers and every delivery attempt."""
    found = message_log.detail(message_id)
    if found is None:
        abort(404)
    message = found.message
    headers, hidden, body_kept = _headers(message)
    return render_template(
        "messages/show.html",
        message=message,
        deliveries=found.deliveries,
        attempts=found.attempts_by_delivery(),
        account=message.account,
        headers=headers,
        hidden_headers=hidden,
        explain=smtp_codes.explain,
        actions=ACTIONS,
        events=found.events,
        body_kept=body_kept,
        body_days=current_app.config["RETENTION_BODY_DAYS"],
    )


# The HTML part is served to a sandboxed frame of the content page and may load nothing: no script,
# no remote image (a tracking pixel would tell the sender the admin read it), no style sheet from
# elsewhere; inline styles and data: images only.
HTML_PART_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox; frame-ancestors 'self'"


@bp.get("/<message_id>/content")
@admin_required
def messages_content(message_id: str):
    """Show what the message says: its text, its HTML (sandboxed, nothing remote), attachments, raw source."""
    message = _get(message_id)
    found = message_log.content(message)
    raw = found.raw[: message_log.CONTENT_SHOWN].decode("utf-8", "replace") if found.raw is not None else None
    return render_template(
        "messages/content.html",
        message=message,
        content=found,
        raw=raw,
        shown=message_log.CONTENT_SHOWN,
        body_days=current_app.config["RETENTION_BODY_DAYS"],
    )


@bp.get("/<message_id>/content.html")
@admin_required
def messages_html_part(message_id: str):
    """The HTML part alone, for the content page's sandboxed frame."""
    found = message_log.content(_get(message_id))
    if found.html is None:
        abort(404)
    response = Response(found.html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = HTML_PART_POLICY
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response


@bp.get("/<message_id>/raw")
@admin_required
def messages_raw(message_id: str):
    """The whole message as it was received, as a .eml download."""
    message = _get(message_id)
    found = message_log.content(message)
    if found.raw is None:
        abort(404)
    response = Response(found.raw, mimetype="message/rfc822")
    response.headers["Content-Disposition"] = f'attachment; filename="{message.id}.eml"'
    return response


# The queue's admin actions, with the delivery statuses each one applies to (shown as buttons).
ACTIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "retry": ((QUEUED, DEFERRED), "Retry now"),
    "hold": ((QUEUED, DEFERRED), "Hold"),
    "release": ((HELD,), "Release"),
    "cancel": ((QUEUED, DEFERRED, HELD), "Cancel"),
}


def apply_action(message_id: str, action: str, delivery_id: int | None = None) -> int:
    """Retry, hold, release or cancel a message's deliveries (or one); return how many changed."""
    rows = Delivery.select().where(Delivery.message == message_id)
    if delivery_id is not None:
        rows = rows.where(Delivery.id == delivery_id)
    rows = list(rows)
    by = current_user.email
    if action in ("retry", "release"):  # these enqueue the rows for the workers at once
        changed = getattr(queue, action)(queue.runtime(current_app.config), rows, by=by)
    else:
        changed = getattr(queue, action)(rows, by=by)
    return len(changed)


def _action_view(action: str):
    def view(message_id: str):
        message = _get(message_id)
        delivery = request.form.get("delivery", "")
        changed = apply_action(message.id, action, int(delivery) if delivery.isdigit() else None)
        if changed:
            audit.record(f"message.{action}", f"message {message.id}", f"{changed} delivery(ies)")
        label = ACTIONS[action][1].lower()
        flash(
            f"{label.capitalize()}: {changed} deliver{'y' if changed == 1 else 'ies'} changed."
            if changed
            else f"Nothing to {label}: no delivery is in a state that allows it."
        )
        return redirect(url_for("messages.messages_show", message_id=message.id))

    view.__name__ = f"messages_{action}"
    view.__doc__ = f"{ACTIONS[action][1]} the message's deliveries (or one, given `delivery`)."
    return view


for _action in ACTIONS:
    bp.add_url_rule(f"/<message_id>/{_action}", view_func=admin_required(_action_view(_action)), methods=["POST"])

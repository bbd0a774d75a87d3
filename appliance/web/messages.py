"""Message log: search with keyset pagination, message detail with its attempts, queue actions."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from peewee import Tuple

from .. import audit, events, queue
from ..message_bytes import MalformedMessage, parse_header_block
from ..models import (
    DEFERRED,
    DELIVERY_STATUSES,
    HELD,
    PARTIAL,
    QUEUED,
    RECEIVED,
    Attempt,
    Delivery,
    Message,
    MessageBody,
    SmtpAccount,
)
from ..policy import acceptance
from . import smtp_codes
from .permissions import admin_required, viewer_required

bp = Blueprint("messages", __name__, url_prefix="/messages")

PAGE_SIZE = 50
MESSAGE_STATUSES = (*DELIVERY_STATUSES, PARTIAL, RECEIVED)
FILTERS = ("rcpt", "sender", "subject", "msgid", "account", "status", "stream", "since", "until")


@dataclass
class Page:
    messages: list[Message]
    next_cursor: str | None


def _day(text: str) -> dt.datetime | None:
    try:
        return dt.datetime.strptime(text, "%Y-%m-%d")
    except ValueError:
        return None


def parse_filters(args) -> tuple[dict[str, str], dict[str, str]]:
    """Read the search form; return (filters that apply, errors by field)."""
    filters = {k: args.get(k, "").strip() for k in FILTERS if args.get(k, "").strip()}
    errors = {}
    for key in ("since", "until"):
        if key in filters and _day(filters[key]) is None:
            errors[key] = "Use a date like 2025-01-31."
    if "account" in filters and not filters["account"].isdigit():
        errors["account"] = "Pick an account from the list."
    if "status" in filters and filters["status"] not in MESSAGE_STATUSES:
        errors["status"] = "Pick a status from the list."
    if "stream" in filters and filters["stream"] not in acceptance.STREAMS:
        errors["stream"] = "Pick transactional or broadcast."
    return {k: v for k, v in filters.items() if k not in errors}, errors


def _where(filters: dict[str, str]) -> list:
    conditions = []
    if rcpt := filters.get("rcpt"):
        # An address matches exactly; a bare domain matches every recipient there (both indexed).
        match = Delivery.rcpt == rcpt if "@" in rcpt else Delivery.domain == rcpt.lower().lstrip("@")
        conditions.append(Message.id.in_(Delivery.select(Delivery.message).where(match)))
    if sender := filters.get("sender"):
        conditions.append(Message.mail_from == sender if "@" in sender.strip("@")
                          else Message.mail_from.endswith("@" + sender.lstrip("@")))
    if subject := filters.get("subject"):
        conditions.append(Message.subject.contains(subject))
    if msgid := filters.get("msgid"):
        header = msgid if msgid.startswith("<") else f"<{msgid}>"
        conditions.append((Message.id == msgid.upper()) | (Message.message_id_header == header))
    if account := filters.get("account"):
        conditions.append(Message.account == int(account))
    if status := filters.get("status"):
        conditions.append(Message.status == status)
    if stream := filters.get("stream"):
        conditions.append(Message.stream == stream)
    if since := filters.get("since"):
        conditions.append(Message.received_at >= _day(since))
    if until := filters.get("until"):
        conditions.append(Message.received_at < _day(until) + dt.timedelta(days=1))
    return conditions


def encode_cursor(message: Message) -> str:
    return f"{message.received_at.isoformat()}~{message.id}"


def _decode_cursor(cursor: str) -> tuple[dt.datetime, str] | None:
    stamp, _, message_id = cursor.partition("~")
    try:
        return dt.datetime.fromisoformat(stamp), message_id
    except ValueError:
        return None


def search(filters: dict[str, str], cursor: str | None = None, limit: int = PAGE_SIZE) -> Page:
    """Return one page of messages, newest first, after ``cursor`` (keyset on received_at, id)."""
    query = Message.select().order_by(Message.received_at.desc(), Message.id.desc())
    conditions = _where(filters)
    after = _decode_cursor(cursor) if cursor else None
    if after:
        stamp, message_id = after
        # Row-value comparison walks the (received_at, id) index from the cursor: no OFFSET scan.
        conditions.append(Tuple(Message.received_at, Message.id)
                          < Tuple(Message.received_at.db_value(stamp), message_id))
    if conditions:
        query = query.where(*conditions)
    rows = list(query.limit(limit + 1))
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, encode_cursor(rows[-1]) if more else None)


def _recipients(messages: list[Message]) -> dict[str, list[Delivery]]:
    found: dict[str, list[Delivery]] = {m.id: [] for m in messages}
    if found:
        query = (Delivery.select(Delivery.message, Delivery.rcpt, Delivery.status)
                 .where(Delivery.message.in_(list(found))).order_by(Delivery.id))
        for delivery in query:
            found[delivery.message_id].append(delivery)
    return found


def _accounts() -> dict[int, SmtpAccount]:
    return {a.id: a for a in SmtpAccount.select(SmtpAccount.id, SmtpAccount.name).order_by(SmtpAccount.name)}


@bp.get("/")
@viewer_required
def messages_list():
    """Search the message log; htmx polling asks for the table fragment only."""
    filters, errors = parse_filters(request.args)
    cursor = request.args.get("after") or None
    page = search(filters, cursor, PAGE_SIZE)
    context = {"page": page, "filters": filters, "errors": errors, "cursor": cursor,
               "recipients": _recipients(page.messages), "accounts": _accounts(),
               "statuses": MESSAGE_STATUSES, "any_message": bool(page.messages or filters or cursor)
               or Message.select().exists()}
    if request.headers.get("HX-Request"):
        return render_template("messages/_table.html", **context)
    return render_template("messages/list.html", **context)


def _get(message_id: str) -> Message:
    message = Message.get_or_none(Message.id == message_id)
    if message is None:
        abort(404)
    return message


# The page shows this much of a message's header section at most: a message stored with a huge
# header (before MAX_HEADER_SIZE, or through the CLI) must not make a page of megabytes.
HEADER_BYTES_SHOWN = 64 * 1024
HEADER_FIELDS_SHOWN = 200
HEADER_VALUE_SHOWN = 2000


def _headers(message: Message) -> tuple[list[tuple[str, str]], int]:
    """Return the header fields to show (values cut to HEADER_VALUE_SHOWN characters) and how
    many more fields the message has than are shown (at least 1 when the header section was cut)."""
    body = MessageBody.get_or_none(MessageBody.message == message.id)
    if body is None:
        return [], 0
    data = bytes(body.data[: HEADER_BYTES_SHOWN + 4])
    end = data.find(b"\r\n\r\n")
    cut = end < 0 and len(body.data) > HEADER_BYTES_SHOWN
    if cut:  # keep whole lines only
        data = data[: data.rfind(b"\r\n", 0, HEADER_BYTES_SHOWN) + 2]
    try:
        fields = parse_header_block(data)[0]
    except MalformedMessage:
        return [], 0
    shown = [(name, value if len(value) <= HEADER_VALUE_SHOWN else value[:HEADER_VALUE_SHOWN] + " …")
             for name, value in fields[:HEADER_FIELDS_SHOWN]]
    return shown, len(fields) - len(shown) or int(cut)


@bp.get("/<message_id>")
@viewer_required
def messages_show(message_id: str):
    """Show a message's envelope, headers and every delivery attempt."""
    message = _get(message_id)
    deliveries = list(Delivery.select().where(Delivery.message == message.id).order_by(Delivery.id))
    attempts: dict[int, list[Attempt]] = {d.id: [] for d in deliveries}
    if deliveries:
        for attempt in (Attempt.select().where(Attempt.delivery.in_(list(attempts)))
                        .order_by(Attempt.started_at, Attempt.id)):
            attempts[attempt.delivery_id].append(attempt)
    account = SmtpAccount.get_or_none(SmtpAccount.id == message.account_id) if message.account_id else None
    headers, hidden = _headers(message)
    return render_template("messages/show.html", message=message, deliveries=deliveries, attempts=attempts,
                           account=account, headers=headers, hidden_headers=hidden, explain=smtp_codes.explain,
                           actions=ACTIONS, events=events.timeline(message.id))


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
        flash(f"{label.capitalize()}: {changed} deliver{'y' if changed == 1 else 'ies'} changed."
              if changed else f"Nothing to {label}: no delivery is in a state that allows it.")
        return redirect(url_for("messages.messages_show", message_id=message.id))

    view.__name__ = f"messages_{action}"
    view.__doc__ = f"{ACTIONS[action][1]} the message's deliveries (or one, given `delivery`)."
    return view


for _action in ACTIONS:
    bp.add_url_rule(f"/<message_id>/{_action}", view_func=admin_required(_action_view(_action)),
                    methods=["POST"])

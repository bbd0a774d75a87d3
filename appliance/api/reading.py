"""Reading an account's messages: ``GET /api/v1/messages`` (the message log's search, newest first,
a page at a time) and ``GET /api/v1/messages/{id}`` (with its attempts and events). A key sees its
own account's messages only: another account's message is not found."""

from __future__ import annotations

from typing import Any

from flask import g, request
from spectree import Response

from .. import message_log
from ..models import READ, Delivery, Message
from . import bp, needs, problems
from .schemas import MessageDetail, MessagePage, MessageQuery, ProblemDocument
from .spec import spec

REFUSALS = {f"HTTP_{s}": ProblemDocument for s in (401, 403, 422, 429)}


def _ts(value) -> str | None:
    return value.isoformat(timespec="seconds") + "Z" if value else None


def summary(m: Message, deliveries: list[Delivery]) -> dict[str, Any]:
    return {
        "id": m.id,
        "status": m.status,
        "mail_from": m.mail_from,
        "from": m.from_header,
        "subject": m.subject,
        "message_id": m.message_id_header,
        "size": m.size,
        "priority": m.priority,
        "stream": m.stream,
        "received_at": _ts(m.received_at),
        "recipients": [
            {"address": d.rcpt, "status": d.status, "attempts": d.attempts, "last_reply": d.last_reply}
            for d in deliveries
        ],
    }


@bp.get("/messages")
@needs(READ)
@spec.validate(
    query=MessageQuery, resp=Response(HTTP_200=MessagePage, **REFUSALS), tags=["messages"], skip_validation=True
)
def api_messages():
    """Search the account's messages

    The message log's filters (recipient, sender, subject, Message-ID, status, stream, date range),
    newest first; `next_cursor` asks for the next page.
    """
    unknown = sorted(set(request.args) - {*MessageQuery.model_fields})
    errors = [{"field": name, "detail": "not a filter of the message log"} for name in unknown]
    filters, wrong = message_log.parse_filters(request.args)
    errors += [{"field": name, "detail": sentence} for name, sentence in wrong.items()]
    try:
        limit = int(request.args.get("limit", "50"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 100:
        errors.append({"field": "limit", "detail": "a whole number from 1 to 100"})
    if errors:
        raise problems.invalid(errors)
    filters["account"] = str(g.api_key.account.id)  # never another account's, whatever was asked
    page = message_log.search(filters, request.args.get("cursor") or None, limit=limit)
    return {
        "messages": [summary(m, page.recipients[m.id]) for m in page.messages],
        "next_cursor": page.next_cursor,
    }


@bp.get("/messages/<message_id>")
@needs(READ)
@spec.validate(
    resp=Response(HTTP_200=MessageDetail, HTTP_404=ProblemDocument, **REFUSALS), tags=["messages"], skip_validation=True
)
def api_message(message_id: str):
    """A message with its recipients, attempts and events"""
    found = message_log.detail(message_id)
    if found is None or found.message.account_id != g.api_key.account.id:
        raise problems.Problem(404, "not-found", "No such message", f"this account has no message {message_id!r}")
    data = summary(found.message, found.deliveries)
    data["attempts"] = [
        {
            "at": _ts(a.started_at),
            "recipient": a.delivery.rcpt,
            "outcome": a.outcome,
            "code": a.code,
            "text": a.text,
            "mx_host": a.mx_host,
            "tls": a.tls,
            "duration_ms": a.duration_ms,
        }
        for a in found.attempts
    ]
    data["events"] = [
        {"type": e["type"], "recipient": e["recipient"], "at": _ts(e["at"]), "details": e["details"]}
        for e in found.events
    ]
    return data

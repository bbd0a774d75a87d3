"""Reading an account's messages: ``GET /api/v1/messages`` (the message log's search, newest first,
a page at a time) and ``GET /api/v1/messages/{id}`` (with its attempts and events). An account's
key sees its own account's messages only (another account's message is not found); an admin key
sees every account's, and may filter by account."""

from __future__ import annotations

from typing import Any

from flask import request
from spectree import Response

from .. import message_log
from ..models import READ, Delivery, Message
from . import bp, needs, own_account_id, problems
from .common import not_found, ts
from .schemas import MessageDetail, MessagePage, MessageQuery, ProblemDocument
from .spec import spec

REFUSALS = {f"HTTP_{s}": ProblemDocument for s in (401, 403, 422, 429)}


def summary(m: Message, deliveries: list[Delivery]) -> dict[str, Any]:
    return {
        "id": m.id,
        "account": m.account_id,
        "status": m.status,
        "mail_from": m.mail_from,
        "from": m.from_header,
        "subject": m.subject,
        "message_id": m.message_id_header,
        "size": m.size,
        "priority": m.priority,
        "stream": m.stream,
        "received_at": ts(m.received_at),
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
    """Search the messages

    The message log's filters (recipient, sender, subject, Message-ID, status, stream, date range;
    `account` with an admin key), newest first; `next_cursor` asks for the next page. An account's
    key searches its own account's messages.
    """
    own = own_account_id()
    unknown = sorted(set(request.args) - {*MessageQuery.model_fields})
    errors = [{"field": name, "detail": "not a filter of the message log"} for name in unknown]
    if own is not None and "account" in request.args:
        errors.append({"field": "account", "detail": "an account's key searches its own account's messages"})
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
    if own is not None:
        filters["account"] = str(own)  # never another account's, whatever was asked
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
    own = own_account_id()
    if found is None or (own is not None and found.message.account_id != own):
        raise not_found("message", message_id)
    data = summary(found.message, found.deliveries)
    data["attempts"] = [
        {
            "at": ts(a.started_at),
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
        {"type": e["type"], "recipient": e["recipient"], "at": ts(e["at"]), "details": e["details"]}
        for e in found.events
    ]
    return data

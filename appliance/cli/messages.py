"""`appliance` commands: messages."""

from __future__ import annotations

from typing import Any

import click
from flask.cli import with_appcontext
from peewee import JOIN

from .. import events
from ..models import (
    Attempt,
    Delivery,
    Message,
    SmtpAccount,
)
from ..policy import acceptance
from .base import cli, emit, ts


@cli.group()
def messages() -> None:
    """Accepted messages and their deliveries."""


def message_dict(m: Message, deliveries: list[Delivery]) -> dict[str, Any]:
    return {
        "id": m.id, "status": m.status, "direction": m.direction,
        "account": m.account.username if m.account_id and m.account else None,
        "mail_from": m.mail_from, "from": m.from_header, "subject": m.subject,
        "message_id": m.message_id_header, "size": m.size, "priority": m.priority, "stream": m.stream,
        "track_opens": m.track_opens, "track_clicks": m.track_clicks,
        "received_at": ts(m.received_at), "client_ip": m.client_ip, "client_helo": m.client_helo, "tls": m.tls,
        "recipients": [
            {"address": d.rcpt, "status": d.status, "attempts": d.attempts,
             "next_attempt_at": ts(d.next_attempt_at) if d.status in ("queued", "deferred") else None,
             "last_reply": d.last_reply}
            for d in deliveries
        ],
    }


def with_deliveries(query) -> list[dict[str, Any]]:
    msgs = list(query)
    by_message: dict[str, list[Delivery]] = {m.id: [] for m in msgs}
    if msgs:
        for d in Delivery.select().where(Delivery.message.in_(list(by_message))).order_by(Delivery.id):
            by_message[d.message_id].append(d)
    return [message_dict(m, by_message[m.id]) for m in msgs]


@messages.command("list")
@click.option("--status", type=click.Choice(["queued", "sending", "deferred", "delivered", "bounced", "failed",
                                             "suppressed", "held", "cancelled", "received", "partial"]))
@click.option("--stream", type=click.Choice(acceptance.STREAMS))
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def messages_list(status: str | None, stream: str | None, limit: int, as_json: bool) -> None:
    """List the newest messages."""
    query = Message.select(Message, SmtpAccount).join(SmtpAccount, JOIN.LEFT_OUTER)
    if status:
        query = query.where(Message.status == status)
    if stream:
        query = query.where(Message.stream == stream)
    rows = with_deliveries(query.order_by(Message.received_at.desc(), Message.id.desc()).limit(limit))
    text = "\n".join(
        f"{r['id']}  {r['received_at']}  {r['status']:<10} {r['stream']:<13} {r['mail_from'] or '<>'} -> "
        f"{', '.join(x['address'] for x in r['recipients']) or '(local)'}  {r['subject']!r}"
        for r in rows
    ) or "no messages"
    emit(rows, as_json, text)


@messages.command("show")
@click.argument("message_id")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def messages_show(message_id: str, as_json: bool) -> None:
    """Show one message with its recipients."""
    query = Message.select(Message, SmtpAccount).join(SmtpAccount, JOIN.LEFT_OUTER).where(
        Message.id == message_id.strip().upper()
    )
    rows = with_deliveries(query)
    if not rows:
        raise click.ClickException(f"no message {message_id!r}")
    data, text = message_report(rows[0])
    emit(data, as_json, text)


def message_report(data: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """A message (from with_deliveries) with its attempts and events, and as text: recipients,
    attempts (the timeline) and events."""
    data["attempts"] = _attempts(data["id"])
    data["events"] = [{**e, "at": ts(e["at"])} for e in events.timeline(data["id"])]
    lines = [f"{k}: {v}" for k, v in data.items() if k not in ("recipients", "attempts", "events")]
    lines += [f"  -> {r['address']}: {r['status']} {r['last_reply']}".rstrip() for r in data["recipients"]]
    lines += ["timeline:"] + [
        f"  {a['at']}  {a['recipient']}  {a['outcome']:<9} {a['code'] or ''} {a['enhanced_code']} {a['text']}"
        f"  ({'via ' + a['mx_host'] + ' [' + a['mx_ip'] + ']' if a['mx_host'] else 'no connection'}"
        f", {a['tls'] or 'no TLS'}, {a['duration_ms']} ms)"
        for a in data["attempts"]
    ] if data["attempts"] else []
    lines += ["events:"] + [f"  {e['at']}  {e['type']:<10} {e['recipient']}".rstrip() for e in data["events"]]
    return data, "\n".join(lines)


def _attempts(message_id: str) -> list[dict[str, Any]]:
    """Every delivery attempt of a message, oldest first (the timeline)."""
    rows = Attempt.select(Attempt, Delivery).join(Delivery).where(Delivery.message == message_id).order_by(
        Attempt.started_at, Attempt.id
    )
    return [
        {"at": ts(a.started_at), "recipient": a.delivery.rcpt, "outcome": a.outcome, "code": a.code,
         "enhanced_code": a.enhanced_code, "text": a.text, "mx_host": a.mx_host, "mx_ip": a.mx_ip,
         "tls": a.tls, "duration_ms": a.duration_ms}
        for a in rows
    ]



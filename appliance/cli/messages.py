"""`appliance` commands: messages."""

from __future__ import annotations

from typing import Any

import click
from flask.cli import with_appcontext

from .. import message_log
from ..models import Delivery, Message
from ..policy import acceptance
from .base import cli, emit, ts


@cli.group()
def messages() -> None:
    """Accepted messages and their deliveries."""


def message_dict(m: Message, deliveries: list[Delivery]) -> dict[str, Any]:
    return {
        "id": m.id,
        "status": m.status,
        "direction": m.direction,
        "account": m.account.username if m.account_id and m.account else None,
        "mail_from": m.mail_from,
        "from": m.from_header,
        "subject": m.subject,
        "message_id": m.message_id_header,
        "size": m.size,
        "priority": m.priority,
        "stream": m.stream,
        "track_opens": m.track_opens,
        "track_clicks": m.track_clicks,
        "received_at": ts(m.received_at),
        "client_ip": m.client_ip,
        "client_helo": m.client_helo,
        "tls": m.tls,
        "recipients": [
            {
                "address": d.rcpt,
                "status": d.status,
                "attempts": d.attempts,
                "next_attempt_at": ts(d.next_attempt_at) if d.status in ("queued", "deferred") else None,
                "last_reply": d.last_reply,
            }
            for d in deliveries
        ],
    }


@messages.command("list")
@click.option("--status", type=click.Choice(message_log.STATUSES))
@click.option("--stream", type=click.Choice(acceptance.STREAMS))
@click.option("--rcpt", help="A recipient address, or a domain for every recipient there.")
@click.option("--sender", help="The envelope sender's address, or a domain for every sender there.")
@click.option("--subject", help="Text the subject contains.")
@click.option("--msgid", help="The message's id or its Message-ID header.")
@click.option("--account", help="The SMTP account's id.")
@click.option("--since", help="Received on or after this day (2025-01-31).")
@click.option("--until", help="Received on or before this day (2025-01-31).")
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def messages_list(limit: int, as_json: bool, **fields: str | None) -> None:
    """List the newest messages, those that match every filter given (the dashboard's search)."""
    filters, errors = message_log.parse_filters(fields)
    if errors:
        raise click.UsageError(" ".join(f"--{field}: {sentence}" for field, sentence in errors.items()))
    page = message_log.search(filters, limit=limit)
    rows = [message_dict(m, page.recipients[m.id]) for m in page.messages]
    text = (
        "\n".join(
            f"{r['id']}  {r['received_at']}  {r['status']:<10} {r['stream']:<13} {r['mail_from'] or '<>'} -> "
            f"{', '.join(x['address'] for x in r['recipients']) or '(local)'}  {r['subject']!r}"
            for r in rows
        )
        or "no messages"
    )
    emit(rows, as_json, text)


@messages.command("show")
@click.argument("message_id")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def messages_show(message_id: str, as_json: bool) -> None:
    """Show one message with its recipients, attempts and events."""
    found = message_log.detail(message_id)
    if found is None:
        raise click.ClickException(f"no message {message_id!r}")
    data, text = message_report(found)
    emit(data, as_json, text)


def message_report(found: message_log.Detail) -> tuple[dict[str, Any], str]:
    """A message's detail as data (message_dict with its attempts and events) and as text: recipients,
    attempts (the timeline) and events."""
    data = message_dict(found.message, found.deliveries)
    data["attempts"] = [
        {
            "at": ts(a.started_at),
            "recipient": a.delivery.rcpt,
            "outcome": a.outcome,
            "code": a.code,
            "enhanced_code": a.enhanced_code,
            "text": a.text,
            "mx_host": a.mx_host,
            "mx_ip": a.mx_ip,
            "tls": a.tls,
            "duration_ms": a.duration_ms,
        }
        for a in found.attempts
    ]
    data["events"] = [{**e, "at": ts(e["at"])} for e in found.events]
    lines = [f"{k}: {v}" for k, v in data.items() if k not in ("recipients", "attempts", "events")]
    lines += [
        f"  -> {r['address']}: {r['status']} {r['last_reply']}".rstrip()
        + (f"  (next attempt {r['next_attempt_at']})" if r["next_attempt_at"] else "")
        for r in data["recipients"]
    ]
    lines += (
        ["timeline:"]
        + [
            f"  {a['at']}  {a['recipient']}  {a['outcome']:<9} {a['code'] or ''} {a['enhanced_code']} {a['text']}"
            f"  ({'via ' + a['mx_host'] + ' [' + a['mx_ip'] + ']' if a['mx_host'] else 'no connection'}"
            f", {a['tls'] or 'no TLS'}, {a['duration_ms']} ms)"
            for a in data["attempts"]
        ]
        if data["attempts"]
        else []
    )
    lines += ["events:"] + [f"  {e['at']}  {e['type']:<10} {e['recipient']}".rstrip() for e in data["events"]]
    return data, "\n".join(lines)

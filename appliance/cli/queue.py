"""`appliance` commands: queue (deliveries waiting to go out)."""

from __future__ import annotations

from typing import Any

import click
from flask import current_app
from flask.cli import with_appcontext

from .. import queue
from ..models import (
    Delivery,
)
from .base import cli, emit, ts


@cli.group("queue")
def queue_group() -> None:
    """Deliveries waiting to go out: list, retry now, hold, release, cancel."""


def delivery_dict(d: Delivery) -> dict[str, Any]:
    return {
        "id": d.id,
        "message": d.message_id,
        "recipient": d.rcpt,
        "status": d.status,
        "priority": d.priority,
        "attempts": d.attempts,
        "next_attempt_at": ts(d.next_attempt_at),
        "last_reply": d.last_reply,
    }


def _deliveries(refs: tuple[str, ...]) -> list[Delivery]:
    """Deliveries named by id, or every delivery of messages named by their ULID."""
    ids = [int(r) for r in refs if r.isdigit()]
    messages = [r.strip().upper() for r in refs if not r.isdigit()]
    rows = list(Delivery.select().where(Delivery.id.in_(ids) | Delivery.message.in_(messages)).order_by(Delivery.id))
    if not rows:
        raise click.ClickException(f"no delivery or message matches {' '.join(refs)}")
    return rows


@queue_group.command("list")
@click.option("--status", type=click.Choice(["queued", "sending", "deferred", "held"]), help="Only this status.")
@click.option("--limit", type=click.IntRange(1, 100000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def queue_list(status: str | None, limit: int, as_json: bool) -> None:
    """List deliveries that are waiting (queued, sending, deferred, held), most urgent first."""
    wanted = [status] if status else ["queued", "sending", "deferred", "held"]
    rows = [
        delivery_dict(d)
        for d in Delivery.select()
        .where(Delivery.status.in_(wanted))
        .order_by(Delivery.priority, Delivery.next_attempt_at, Delivery.id)
        .limit(limit)
    ]
    text = (
        "\n".join(
            f"{r['id']:>6}  {r['message']}  {r['status']:<8} p{r['priority']} try {r['attempts']}"
            f"  next {r['next_attempt_at']}  {r['recipient']}  {r['last_reply']}".rstrip()
            for r in rows
        )
        or "the queue is empty"
    )
    emit(rows, as_json, text)


def _queue_action(verb: str, refs: tuple[str, ...], as_json: bool) -> None:
    rows = _deliveries(refs)
    if verb in ("retry", "release"):
        changed = getattr(queue, verb)(queue.runtime(current_app.config), rows, by="cli")
    else:
        changed = getattr(queue, verb)(rows, by="cli")
    data = [delivery_dict(d) for d in changed]
    skipped = len(rows) - len(changed)
    emit(
        data,
        as_json,
        f"{verb}: {len(changed)} deliver{'y' if len(changed) == 1 else 'ies'}"
        + (f" ({skipped} skipped: not in a state that allows it)" if skipped else ""),
    )


@queue_group.command("retry")
@click.argument("refs", nargs=-1, required=True, metavar="ID...")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def queue_retry(refs: tuple[str, ...], as_json: bool) -> None:
    """Try deferred deliveries now (IDs: delivery ids or message ids)."""
    _queue_action("retry", refs, as_json)


@queue_group.command("hold")
@click.argument("refs", nargs=-1, required=True, metavar="ID...")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def queue_hold(refs: tuple[str, ...], as_json: bool) -> None:
    """Hold waiting deliveries until released."""
    _queue_action("hold", refs, as_json)


@queue_group.command("release")
@click.argument("refs", nargs=-1, required=True, metavar="ID...")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def queue_release(refs: tuple[str, ...], as_json: bool) -> None:
    """Release held deliveries: they go out now."""
    _queue_action("release", refs, as_json)


@queue_group.command("cancel")
@click.argument("refs", nargs=-1, required=True, metavar="ID...")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def queue_cancel(refs: tuple[str, ...], as_json: bool) -> None:
    """Cancel waiting or held deliveries for good (no bounce is sent)."""
    _queue_action("cancel", refs, as_json)

"""`appliance` commands: webhooks (endpoints that get every event of the apps' mail, signed)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import click
from flask import current_app
from flask.cli import with_appcontext

from .. import queue, webhooks
from ..models import Webhook
from .base import cli, emit, ts


@cli.group("webhooks")
def webhooks_group() -> None:
    """Endpoints that get each event (delivered, bounced, opened, …) as a signed POST (docs/webhooks.md)."""


def _shown(value: Any) -> Any:
    return ts(value) if isinstance(value, dt.datetime) else value


def webhook_dict(hook: Webhook) -> dict[str, Any]:
    row = {k: _shown(v) for k, v in webhooks.as_dict(hook).items()}
    row["deliveries"] = webhooks.counts([hook.id])[hook.id]
    return row


def _line(row: dict[str, Any]) -> str:
    state = "active" if row["active"] else "OFF"
    types = ",".join(row["events"]) or "every event"
    owners = ",".join(row["accounts"]) or "every account"
    return f"{row['id']:>4}  {state:<6}  {row['url']}  ({types}; {owners})"


def _fail(exc: webhooks.WebhookError):
    raise click.ClickException(str(exc)) from None


@webhooks_group.command("create")
@click.argument("url")
@click.option("--events", "types", multiple=True, help="Event types wanted, comma separated (default: every type).")
@click.option("--account", "owners", multiple=True, help="Only this SMTP account's mail (id or username; repeatable).")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def webhooks_create(url: str, types: tuple[str, ...], owners: tuple[str, ...], as_json: bool) -> None:
    """Add an endpoint; its signing secret is printed this once."""
    try:
        hook = webhooks.create(current_app.config, url, list(types), list(owners))
    except webhooks.WebhookError as exc:
        _fail(exc)
    row = {**webhook_dict(hook), "secret": hook.secret}
    emit(row, as_json, f"{_line(row)}\nsecret (shown once, keep it with the receiver): {hook.secret}")


@webhooks_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def webhooks_list(as_json: bool) -> None:
    """List the endpoints."""
    rows = [webhook_dict(h) for h in webhooks.listed()]
    emit(rows, as_json, "\n".join(_line(r) for r in rows) or "no webhooks")


@webhooks_group.command("show")
@click.argument("webhook_id")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def webhooks_show(webhook_id: str, as_json: bool) -> None:
    """Show an endpoint and its latest calls (status code, time, duration, answer)."""
    try:
        hook = webhooks.get(webhook_id)
    except webhooks.WebhookError as exc:
        _fail(exc)
    row = webhook_dict(hook)
    row["calls"] = [{k: _shown(v) for k, v in c.items()} for c in webhooks.recent_calls(hook.id)]
    counted = ", ".join(f"{n} {status}" for status, n in row["deliveries"].items())
    lines = [_line(row), f"      deliveries: {counted}"]
    if row["disabled_reason"]:
        lines.append(f"      turned off: {row['disabled_reason']}")
    for c in row["calls"]:
        code = c["status_code"] or "---"
        lines.append(
            f"      {c['at']}  {code}  {c['duration_ms']:>5} ms  delivery {c['delivery']} ({c['event']}, "
            f"{c['delivery_status']})  {c['excerpt']}"
        )
    emit(row, as_json, "\n".join(lines))


@webhooks_group.command("test")
@click.argument("webhook_id")
@with_appcontext
def webhooks_test(webhook_id: str) -> None:
    """Send a test event (type webhook.test) to an endpoint; the workers make the call."""
    try:
        row = webhooks.send_test(webhook_id)
    except webhooks.WebhookError as exc:
        _fail(exc)
    queue.runtime(current_app.config).enqueue_webhooks([webhooks.Next(row.msg_id, 0)])
    click.echo(f"test event {row.msg_id} queued as delivery {row.id}: `appliance webhooks show {row.webhook_id}`")


@webhooks_group.command("replay")
@click.argument("delivery_id")
@with_appcontext
def webhooks_replay(delivery_id: str) -> None:
    """Send a failed event again now (the delivery id is in `webhooks show`), with a fresh retry schedule."""
    try:
        row = webhooks.replay(delivery_id)
    except webhooks.WebhookError as exc:
        _fail(exc)
    queue.runtime(current_app.config).enqueue_webhooks([webhooks.Next(row.msg_id, 0)])
    click.echo(f"delivery {row.id} ({row.event_type}) queued again")


@webhooks_group.command("enable")
@click.argument("webhook_id")
@with_appcontext
def webhooks_enable(webhook_id: str) -> None:
    """Turn an endpoint on again: the events waiting for it go out."""
    try:
        hook = webhooks.set_active(webhook_id, True)
    except webhooks.WebhookError as exc:
        _fail(exc)
    queue.sweep_webhooks(queue.runtime(current_app.config))
    click.echo(f"webhook {hook.id} is on")


@webhooks_group.command("disable")
@click.argument("webhook_id")
@with_appcontext
def webhooks_disable(webhook_id: str) -> None:
    """Turn an endpoint off: nothing is sent to it, and no new event is kept for it."""
    try:
        hook = webhooks.set_active(webhook_id, False)
    except webhooks.WebhookError as exc:
        _fail(exc)
    click.echo(f"webhook {hook.id} is off")


@webhooks_group.command("delete")
@click.argument("webhook_id")
@with_appcontext
def webhooks_delete(webhook_id: str) -> None:
    """Delete an endpoint with the events waiting for it and its calls."""
    try:
        hook = webhooks.delete(webhook_id)
    except webhooks.WebhookError as exc:
        _fail(exc)
    click.echo(f"webhook {hook.id} ({hook.url}) deleted")

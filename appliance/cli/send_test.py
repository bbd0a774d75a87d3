"""`appliance` commands: send-test."""

from __future__ import annotations

import time

import click
from flask import current_app
from flask.cli import with_appcontext

from .. import message_log, notices
from ..models import DELIVERED, QUEUED, SENDING
from .base import cli, emit
from .messages import message_report


@cli.command("send-test")
@click.argument("recipient")
@click.option(
    "--wait",
    "wait_seconds",
    type=click.FloatRange(0, 3600),
    default=60,
    show_default=True,
    help="Seconds to wait for the first outcome (0: queue it and return).",
)
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def send_test(recipient: str, wait_seconds: float, as_json: bool) -> None:
    """Send a test message through the queue, as any mail goes, and show what happened to it.

    Exits 0 when it was delivered, 1 otherwise (bounced, deferred, or still waiting)."""
    try:
        message_id = notices.send_test(current_app.config, recipient)
    except notices.NoticeError as exc:
        raise click.ClickException(str(exc)) from None
    deadline = time.monotonic() + wait_seconds
    while True:
        found = message_log.detail(message_id)
        waiting = [d for d in found.deliveries if d.status in (QUEUED, SENDING)]
        if not waiting or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    data, text = message_report(found)
    delivered = all(r["status"] == DELIVERED for r in data["recipients"])
    if waiting and not data["attempts"]:
        text += (
            "\nnot sent yet: is the appliance running? (`systemctl status appliance`); "
            f"`appliance messages show {message_id}` shows it later"
        )
    emit(data, as_json, text)
    if not delivered:
        raise click.exceptions.Exit(1)

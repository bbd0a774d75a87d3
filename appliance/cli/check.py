"""`appliance check`: the deliverability checker's check addresses and their grades (docs/checker.md)."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext

from .. import checker
from .base import cli, emit, ts

_MARKS = {checker.PASS: "pass", checker.WARN: "WARN", checker.FAIL: "FAIL"}


@cli.group("check")
def check() -> None:
    """Check addresses: send a message there and see how a receiver grades it."""


@check.command("new")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def check_new(as_json: bool) -> None:
    """Make a check address; send a message to it, then `appliance check show TOKEN`."""
    address, token = checker.new(current_app.config)
    shown = checker.show(current_app.config, token)
    emit(
        {"address": address, "token": token, "url": shown["url"], "expires_at": ts(shown["expires_at"])},
        as_json,
        f"send a message to {address} (by {ts(shown['expires_at'])} UTC), then:\n"
        f"  appliance check show {token}\n  or open {shown['url']}",
    )


@check.command("show")
@click.argument("token")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def check_show(token: str, as_json: bool) -> None:
    """Show the grade of the message sent to a check address (TOKEN, or the whole address)."""
    try:
        shown = checker.show(current_app.config, token)
    except checker.CheckError as exc:
        raise click.ClickException(str(exc)) from None
    data = {k: ts(v) if k.endswith("_at") else v for k, v in shown.items()}
    if shown["status"] != "graded":
        text = f"{shown['address']}: {shown['status']} (no message yet; it expires {data['expires_at']} UTC)"
    else:
        lines = [
            f"{shown['address']}: grade {shown['grade']} (message {shown['message_id']} from {shown['client_ip']})"
        ]
        for f in shown["findings"]:
            lines.append(f"  {_MARKS.get(f['status'], f['status']):4}  {f['key']:16} {f['summary']}")
            if f["fix"] and f["status"] != checker.PASS:
                lines.append(f"        {'':16} fix: {f['fix']}")
        text = "\n".join(lines)
    emit(data, as_json, text)

"""`appliance` commands: suppressions."""

from __future__ import annotations

from typing import Any

import click
from flask.cli import with_appcontext

from .. import suppressions as service
from ..models import Suppression
from .base import cli, emit, ts


@cli.group()
def suppressions() -> None:
    """Addresses that are never sent to (hard bounces, or added by hand)."""


def suppression_dict(s: Suppression) -> dict[str, Any]:
    return {"address": s.address, "source": s.source, "reason": s.reason, "created_at": ts(s.created_at)}


@suppressions.command("list")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def suppressions_list(as_json: bool) -> None:
    """List suppressed addresses, newest first."""
    rows = [suppression_dict(s) for s in service.search()]
    text = "\n".join(f"{r['address']:<40} {r['source']:<7} {r['created_at']}  {r['reason']}" for r in rows)
    emit(rows, as_json, text or "no suppressed addresses")


@suppressions.command("add")
@click.argument("address")
@click.option("--reason", default="added by an admin", show_default=True)
@with_appcontext
def suppressions_add(address: str, reason: str) -> None:
    """Suppress an address: later messages to it are accepted and recorded, never sent."""
    try:
        row = service.add(address, reason)
    except service.SuppressionError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"suppressed {row.address}")


@suppressions.command("remove")
@click.argument("address")
@with_appcontext
def suppressions_remove(address: str) -> None:
    """Stop suppressing an address."""
    try:
        service.remove(address)
    except service.SuppressionError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{address.strip().lower()} is no longer suppressed")

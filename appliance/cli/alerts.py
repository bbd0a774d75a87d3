"""`appliance` commands: alerts."""

from __future__ import annotations

from typing import Any

import click
from flask.cli import with_appcontext

from .. import alerts as alerts_service
from ..models import (
    Alert,
)
from .base import cli, emit, ts


@cli.group("alerts")
def alerts_group() -> None:
    """The alert center: unauthorized senders, broken DNS records, unverified domains, a low disk."""


def alert_dict(a: Alert) -> dict[str, Any]:
    return {
        "id": a.id,
        "kind": a.kind,
        "severity": a.severity,
        "subject": a.subject,
        "text": a.text,
        "first_seen": ts(a.first_seen),
        "last_seen": ts(a.last_seen),
        "count": a.count,
        "acknowledged": a.acknowledged,
        "acknowledged_by": a.acknowledged_by or None,
    }


@alerts_group.command("list")
@click.option("--all", "include_acknowledged", is_flag=True, help="Include acknowledged alerts.")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def alerts_list(include_acknowledged: bool, as_json: bool) -> None:
    """List open alerts, most recent first."""
    rows = [alert_dict(a) for a in alerts_service.listed(include_acknowledged=include_acknowledged)]
    text = (
        "\n".join(
            f"{r['id']:>4}  {r['last_seen']}  {r['severity']:<8} {r['kind']:<28} {r['subject']}  x{r['count']}"
            f"{'  (acknowledged)' if r['acknowledged'] else ''}\n      {r['text']}"
            for r in rows
        )
        or "no open alerts"
    )
    emit(rows, as_json, text)


@alerts_group.command("ack")
@click.argument("ids", nargs=-1, type=int, metavar="ID...")
@click.option("--all", "everything", is_flag=True, help="Acknowledge every open alert.")
@with_appcontext
def alerts_ack(ids: tuple[int, ...], everything: bool) -> None:
    """Acknowledge alerts: their repeats open a new alert (and mail again)."""
    if not ids and not everything:
        raise click.ClickException("give alert ids, or --all")
    count = alerts_service.acknowledge(None if everything else list(ids), "cli")
    if ids and not count:
        raise click.ClickException(f"no open alert among {' '.join(map(str, ids))}")
    click.echo(f"acknowledged {count} alert{'s' if count != 1 else ''}")

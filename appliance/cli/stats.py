"""`appliance stats`: the overview page's figures (appliance/stats.py) and the analytics (appliance/analytics.py)."""

from __future__ import annotations

import datetime as dt

import click
from flask.cli import with_appcontext

from .. import analytics, clock, stats
from ..policy import acceptance
from .base import cli, emit, ts


@cli.command("stats")
@click.option(
    "--period",
    type=click.Choice(list(stats.PERIODS)),
    default="today",
    show_default=True,
    help="today, the last 7 days or the last 30 days (each from midnight).",
)
@click.option("--account", "account_id", type=int, default=None, help="Analytics of this account's mail only (its id).")
@click.option("--stream", type=click.Choice(acceptance.STREAMS), default=None, help="Analytics of one stream only.")
@click.option(
    "--since",
    type=click.DateTime(["%Y-%m-%d"]),
    default=None,
    help="Analytics of the messages received from this day (default: the period's start).",
)
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def stats_show(
    period: str, account_id: int | None, stream: str | None, since: dt.datetime | None, as_json: bool
) -> None:
    """Show messages accepted and deliveries per outcome in a period, and the queue now; and the
    analytics (sent, delivered, bounced, complained, opened, clicked, unsubscribed, human rates) of
    the messages received since then, for one account or stream if asked."""
    data = stats.summary(period, clock.now(), account_id=account_id, stream=stream, since=since)
    data["since"], data["analytics"]["since"] = ts(data["since"]), ts(data["analytics"]["since"])
    text = "\n".join(
        [
            f"since {data['since']} ({stats.PERIODS[period].lower()}):",
            *(f"  {name:<10} {n}" for name, n in data["counts"].items()),
            f"in the queue now: {sum(data['queue'].values())}"
            + "".join(f", {n} {status}" for status, n in sorted(data["queue"].items())),
            f"analytics of the messages received since {data['analytics']['since']}:",
            *(
                f"  {name:<18} {data['analytics'][name]}"
                for name in (*analytics.METRICS, "unique_human_opens", "unique_human_clicks", "open_rate", "click_rate")
            ),
        ]
    )
    emit(data, as_json, text)

"""`appliance stats`: the overview page's figures (appliance/stats.py) on the command line."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from .. import clock, stats
from .base import cli, emit, ts


@cli.command("stats")
@click.option("--period", type=click.Choice(list(stats.PERIODS)), default="today", show_default=True,
              help="today, the last 7 days or the last 30 days (each from midnight).")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def stats_show(period: str, as_json: bool) -> None:
    """Show messages accepted and deliveries per outcome in a period, and the queue now."""
    now = clock.now()
    since = stats.period_start(period, now)
    data = {"period": period, "since": ts(since), "counts": stats.counts(since), "queue": stats.queue_depth()}
    text = "\n".join([f"since {data['since']} ({stats.PERIODS[period].lower()}):",
                      *(f"  {name:<10} {n}" for name, n in data["counts"].items()),
                      f"in the queue now: {sum(data['queue'].values())}"
                      + "".join(f", {n} {status}" for status, n in sorted(data["queue"].items()))])
    emit(data, as_json, text)

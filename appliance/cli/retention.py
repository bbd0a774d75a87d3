"""`appliance` commands: retention (the purge of old message bodies and messages)."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext

from .. import retention as retention_service
from .base import cli, emit


@cli.group("retention")
def retention_group() -> None:
    """Old message bodies and messages: purge them now, or see what would go."""


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB"


def report_text(report: retention_service.Report) -> str:
    verb = "would purge" if report.dry_run else "purged"
    body_rule = f"received before {report.body_cutoff:%Y-%m-%d %H:%M}" if report.body_cutoff else "kept for ever"
    message_rule = (
        f"received before {report.message_cutoff:%Y-%m-%d %H:%M}" if report.message_cutoff else "kept for ever"
    )
    lines = [
        f"bodies: {verb} {report.bodies} (bodies of mail {body_rule})",
        f"messages: {verb} {report.messages} (mail {message_rule}, with its deliveries, attempts and events)",
    ]
    if not report.dry_run:
        lines.append(
            f"  with {report.deliveries} deliveries, {report.attempts} attempts, {report.events} events, "
            f"in {report.batches} batches of up to {retention_service.BATCH} messages, {report.seconds:.1f} s"
        )
    lines.append(f"kept: {report.kept_pending} old messages still queued, sending, deferred or held")
    if report.dry_run:
        lines.append(f"database: {_mib(report.size_before)}")
    else:
        lines.append(f"database: {_mib(report.size_before)} before, {_mib(report.size_after)} after")
    return "\n".join(lines)


@retention_group.command("run")
@click.option("--dry-run", is_flag=True, help="Only count what would be purged.")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def retention_run(dry_run: bool, as_json: bool) -> None:
    """Purge bodies older than RETENTION_BODY_DAYS and messages older than RETENTION_DAYS now
    (the hourly task does the same); print what was purged."""
    report = retention_service.purge(current_app.config, dry_run=dry_run)
    emit(report.as_dict(), as_json, report_text(report))

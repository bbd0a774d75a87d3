"""`appliance` commands: serve and migrate."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext

from .. import backup as backup_service
from .. import db
from ..serve import serve as run
from .base import cli


@cli.command()
@click.option(
    "--role",
    type=click.Choice(["all", "smtp", "web", "worker"]),
    default="all",
    show_default=True,
    help="What this process runs: everything, or one part of the scale-out mode.",
)
@with_appcontext
def serve(role: str) -> None:
    """Run the dashboard, the SMTP listeners and the workers (same as `python app.py`)."""
    try:
        run(current_app._get_current_object(), role)
    except backup_service.BackupError as exc:
        raise click.ClickException(str(exc)) from None


@cli.command()
@with_appcontext
def migrate() -> None:
    """Apply pending database migrations (start-up does this too)."""
    applied = db.migrate()
    click.echo("applied: " + ", ".join(applied) if applied else "the schema is up to date")

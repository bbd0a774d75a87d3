"""`appliance` commands: backup and restore."""

from __future__ import annotations

from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext

from .. import backup as backup_service
from .. import clock
from .base import cli


@cli.command("backup")
@click.argument("path", required=False, type=click.Path(dir_okay=False, writable=True))
@with_appcontext
def backup_command(path: str | None) -> None:
    """Write a backup of the database, the keys and the TLS files (online; default DATA_DIR/backups)."""
    now = clock.now()
    target = Path(path) if path else backup_service.default_path(current_app.config["DATA_DIR"], now)
    try:
        manifest = backup_service.create(current_app.config, target, now)
    except backup_service.BackupError as exc:
        raise click.ClickException(str(exc)) from None
    counts = manifest["counts"]
    click.echo(
        f"backup written: {target} ({backup_service.size_text(target)}; {counts.get('message', 0)} messages, "
        f"{counts.get('smtp_account', 0)} SMTP accounts, {counts.get('domain', 0)} domains)"
    )


@cli.command("restore")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Replace a database that already holds data.")
@with_appcontext
def restore_command(path: str, force: bool) -> None:
    """Restore a backup into DATA_DIR, with the appliance stopped; what it replaces is kept aside."""
    try:
        restored = backup_service.restore(current_app.config, Path(path), clock.now(), force=force)
    except backup_service.BackupError as exc:
        raise click.ClickException(str(exc)) from None
    manifest = restored.manifest
    counts = manifest["counts"]
    click.echo(
        f"restored the backup of {manifest['created_at']} ({manifest['hostname']}): "
        f"{counts.get('message', 0)} messages, {counts.get('smtp_account', 0)} SMTP accounts"
    )
    if restored.moved_aside:
        click.echo(f"what it replaced is in {restored.moved_aside}")
    click.echo("start the appliance: mail that was queued is delivered, nothing already delivered is sent again")

"""`appliance` commands: admins."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from .. import admins as admins_service
from .. import audit
from ..accounts import AccountError
from .base import cli


@cli.group()
def admin() -> None:
    """Dashboard administrators."""


@admin.command("create")
@click.argument("email")
@click.option("--role", type=click.Choice(admins_service.ROLES), default="admin")
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help="Read from a prompt (or standard input) when not given.",
)
@with_appcontext
def admin_create(email: str, role: str, password: str) -> None:
    """Create a dashboard admin."""
    try:
        user = admins_service.create(email, password, role)
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None
    audit.record("user.create", f"user {user.email}", f"role {user.role}")
    click.echo(f"created {user.role} {user.email}")


@admin.command("first")
@with_appcontext
def admin_first() -> None:
    """Create the first admin, when there is none, and print its login once (installers run this so
    the password is shown to whoever installs, not left in the service's log)."""
    first = admins_service.ensure_first_admin()
    if first is None:
        click.echo("an admin exists already: nothing created (`appliance admin create` adds another)")
        return
    email, password = first
    click.echo(f"first admin login (shown once): {email} / {password}")

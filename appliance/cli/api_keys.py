"""`appliance` commands: API keys of the SMTP accounts and the admins' keys (the HTTP API, docs/api.md)."""

from __future__ import annotations

from typing import Any

import click
from flask.cli import with_appcontext

from .. import api_keys as service
from ..models import SCOPES, AdminUser, ApiKey
from .accounts import get_account
from .base import cli, emit, ts


@cli.group("api-keys")
def api_keys() -> None:
    """Keys that apps send with over HTTP (Authorization: Bearer KEY)."""


def key_dict(k: ApiKey) -> dict[str, Any]:
    return {
        "id": k.id,
        "prefix": k.prefix,
        "account": k.account_id,
        "username": k.account.username if k.account_id is not None else None,
        "admin": k.admin.email if k.account_id is None else None,
        "scope": k.scope,
        "name": k.name,
        "created_at": ts(k.created_at),
        "last_used_at": ts(k.last_used_at),
        "revoked_at": ts(k.revoked_at),
    }


@api_keys.command("create")
@click.argument("account", required=False)
@click.option(
    "--admin",
    "admin_email",
    default=None,
    metavar="EMAIL",
    help="An admin key of this dashboard admin instead (scope read or manage, every account's things).",
)
@click.option(
    "--scope", type=click.Choice(SCOPES), default=None, help="send, read or manage [default: send; admin: manage]."
)
@click.option("--name", default="", help="What the key is for, e.g. the app that uses it.")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def api_keys_create(account: str | None, admin_email: str | None, scope: str | None, name: str, as_json: bool) -> None:
    """Give ACCOUNT (id or username) a key, or the admin EMAIL an admin key; the key is shown this once."""
    if (account is None) == (admin_email is None):
        raise click.ClickException("name an ACCOUNT, or give --admin EMAIL for an admin key")
    try:
        if admin_email is not None:
            admin = AdminUser.get_or_none(AdminUser.email == admin_email.strip().lower())
            if admin is None:
                raise click.ClickException(f"no dashboard user {admin_email!r} (appliance admin create EMAIL)")
            row, key = service.create_admin(admin, scope or "manage", name)
        else:
            row, key = service.create(get_account(account), scope or "send", name)
    except service.ApiKeyError as exc:
        raise click.ClickException(str(exc)) from None
    emit(
        key_dict(row) | {"key": key},
        as_json,
        f"key {row.prefix} ({row.scope}) of {service.owner(row)} — shown once, keep it now:\n{key}",
    )


@api_keys.command("list")
@click.option("--account", "account_ref", default=None, help="Only this account's keys (id or username).")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def api_keys_list(account_ref: str | None, as_json: bool) -> None:
    """List the keys (never the keys themselves), newest first."""
    account_id = get_account(account_ref).id if account_ref else None
    rows = [key_dict(k) for k in service.listing(account_id)]
    text = "\n".join(
        f"{r['id']:>4} {r['prefix']} {r['scope']:<6} {r['username'] or 'admin ' + r['admin']:<30} "
        f"{'revoked ' + r['revoked_at'] if r['revoked_at'] else 'active'}  {r['name']}"
        for r in rows
    )
    emit(rows, as_json, text or "no API keys")


@api_keys.command("revoke")
@click.argument("key_id")
@with_appcontext
def api_keys_revoke(key_id: str) -> None:
    """Revoke a key (by id or prefix): requests with it are refused from now on."""
    row = service.find(key_id)
    if row is None:
        raise click.ClickException(f"no API key {key_id!r} (appliance api-keys list shows them)")
    if not service.revoke(row):
        raise click.ClickException(f"API key {row.prefix} was revoked already")
    click.echo(f"revoked API key {row.prefix} of {service.owner(row)}")

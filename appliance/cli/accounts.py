"""`appliance` commands: SMTP accounts."""

from __future__ import annotations

from typing import Any

import click
from flask.cli import with_appcontext

from .. import accounts as accounts_service
from .. import senders as senders_service
from ..accounts import AccountError
from ..models import (
    SmtpAccount,
)
from ..policy.acceptance import STREAMS
from .base import cli, emit, ts


@cli.group()
def accounts() -> None:
    """SMTP accounts (credentials that apps and devices use to send)."""


def account_dict(a: SmtpAccount) -> dict[str, Any]:
    return {
        "id": a.id,
        "name": a.name,
        "username": a.username,
        "active": a.active,
        "priority": a.priority,
        "note": a.note,
        "ip_rules": a.networks,
        "ip_only": a.ip_only,
        "created_at": ts(a.created_at),
        "last_login_at": ts(a.last_login_at),
        "last_login_ip": a.last_login_ip,
        "last_failure_at": ts(a.last_failure_at),
        "last_failure_ip": a.last_failure_ip,
        "last_failure_reason": a.last_failure_reason,
        "authorized_domains": senders_service.lines(a.authorized_domains),
        "authorized_senders": senders_service.lines(a.authorized_senders),
        "sender_mode": a.sender_mode,
        "stream": a.stream,
        "track_opens": a.track_opens,
        "track_clicks": a.track_clicks,  # null: the stream's default
    }


def _tracking_text(data: dict[str, Any]) -> str:
    return ", ".join(
        f"{what} {'default' if data[key] is None else 'on' if data[key] else 'off'}"
        for what, key in (("opens", "track_opens"), ("clicks", "track_clicks"))
    )


def get_account(ref: str) -> SmtpAccount:
    account = accounts_service.find(ref)
    if account is None:
        raise click.ClickException(f"no SMTP account {ref!r} (give its id or username)")
    return account


@accounts.command("create")
@click.argument("name")
@click.option("--ip", "networks", multiple=True, metavar="CIDR", help="Only these networks may use it (repeatable).")
@click.option("--ip-only", is_flag=True, help="Authenticate by source network alone (needs --ip).")
@click.option("--priority", type=int, default=3, show_default=True, help="1 very high … 5 very low.")
@click.option("--note", default="")
@click.option(
    "--authorized-domains",
    default=None,
    metavar="LIST",
    help="Domains it may send from, separated by `;` (or `,`/spaces); `*.D` covers D and its subdomains. "
    "Empty: any verified sender.",
)
@click.option(
    "--authorized-senders",
    default=None,
    metavar="LIST",
    help="Addresses it may send as, separated by `;` (or `,`/spaces).",
)
@click.option(
    "--sender-mode",
    type=click.Choice(senders_service.MODES),
    default=None,
    help="block: refuse an unauthorized sender (553) and alert; alert: accept and alert. Default block.",
)
@click.option(
    "--stream",
    type=click.Choice(STREAMS),
    default="transactional",
    show_default=True,
    help="The stream of its mail unless a message's X-Stream says otherwise.",
)
@click.option(
    "--track-opens/--no-track-opens",
    default=None,
    help="Open tracking (default: on for broadcast, off for transactional).",
)
@click.option(
    "--track-clicks/--no-track-clicks",
    default=None,
    help="Click tracking (default: on for broadcast, off for transactional).",
)
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def accounts_create(
    name: str,
    networks: tuple[str, ...],
    ip_only: bool,
    priority: int,
    note: str,
    authorized_domains: str | None,
    authorized_senders: str | None,
    sender_mode: str | None,
    stream: str,
    track_opens: bool | None,
    track_clicks: bool | None,
    as_json: bool,
) -> None:
    """Create an SMTP account; its password is printed this once."""
    authorization = _authorization(authorized_domains, authorized_senders, sender_mode)
    try:
        account, password = accounts_service.create(
            name,
            networks=networks,
            ip_only=ip_only,
            priority=priority,
            note=note,
            stream=stream,
            track_opens=track_opens,
            track_clicks=track_clicks,
        )
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None
    if authorization:
        senders_service.authorize(account, authorization)
        account = SmtpAccount.get_by_id(account.id)
    data = account_dict(account) | {"password": password}
    shown = "(the password is shown only now; `appliance accounts reset-password` makes a new one)"
    if account.ip_only:
        shown = (
            f"no password needed from {', '.join(account.networks)}: mail from there is this account's "
            "without AUTH.\nFor a client there that insists on AUTH, the password is shown only now."
        )
    emit(data, as_json, f"username: {account.username}\npassword: {password}\n{shown}")


@accounts.command("list")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def accounts_list(as_json: bool) -> None:
    """List SMTP accounts."""
    rows = [account_dict(a) for a in SmtpAccount.select().order_by(SmtpAccount.id)]
    text = (
        "\n".join(
            f"{r['id']:>4}  {r['username']:<32} {'active' if r['active'] else 'disabled':<8} p{r['priority']}"
            f"  last login {r['last_login_at'] or 'never'}"
            + (f"  last failure {r['last_failure_at']} ({r['last_failure_reason']})" if r["last_failure_at"] else "")
            for r in rows
        )
        or "no SMTP accounts yet: appliance accounts create NAME"
    )
    emit(rows, as_json, text)


@accounts.command("show")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def accounts_show(ref: str, as_json: bool) -> None:
    """Show one SMTP account (by id or username)."""
    data = account_dict(get_account(ref))
    emit(data, as_json, "\n".join(f"{k}: {v}" for k, v in data.items()))


def _authorization(domains: str | None, addresses: str | None, mode: str | None) -> dict[str, str]:
    """The sender authorization options that were given, checked, as SmtpAccount fields."""
    try:
        return senders_service.authorization(domains, addresses, mode)
    except senders_service.SenderError as exc:
        raise click.ClickException(str(exc)) from None


@accounts.command("edit")
@click.argument("ref")
@click.option("--name", default=None, help="A new name (the username stays).")
@click.option("--note", default=None)
@click.option("--priority", type=int, default=None, help="1 very high … 5 very low.")
@click.option(
    "--ip",
    "networks",
    multiple=True,
    metavar="CIDR",
    help="The networks that may use it, replacing the list (repeatable; --ip '' clears it).",
)
@click.option("--ip-only/--no-ip-only", default=None, help="Authenticate by source network alone (needs networks).")
@click.option(
    "--authorized-domains",
    default=None,
    metavar="LIST",
    help="Domains it may send from, separated by `;` (or `,`/spaces); `*.D` covers D and its subdomains; "
    '"" clears the list.',
)
@click.option(
    "--authorized-senders",
    default=None,
    metavar="LIST",
    help='Addresses it may send as, separated by `;` (or `,`/spaces); "" clears the list.',
)
@click.option(
    "--sender-mode",
    type=click.Choice(senders_service.MODES),
    default=None,
    help="block: refuse an unauthorized sender (553) and alert; alert: accept and alert.",
)
@click.option(
    "--stream",
    type=click.Choice(STREAMS),
    default=None,
    help="The stream of its mail unless a message's X-Stream says otherwise.",
)
@click.option("--track-opens/--no-track-opens", default=None, help="Open tracking on or off.")
@click.option("--track-clicks/--no-track-clicks", default=None, help="Click tracking on or off.")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def accounts_edit(
    ref: str,
    name: str | None,
    note: str | None,
    priority: int | None,
    networks: tuple[str, ...],
    ip_only: bool | None,
    authorized_domains: str | None,
    authorized_senders: str | None,
    sender_mode: str | None,
    stream: str | None,
    track_opens: bool | None,
    track_clicks: bool | None,
    as_json: bool,
) -> None:
    """Change an account's settings (checked as the dashboard checks them) and its sender
    authorization; prints the account."""
    account = get_account(ref)
    settings = {
        k: v
        for k, v in {
            "name": name,
            "note": note,
            "priority": priority,
            "networks": networks or None,
            "ip_only": ip_only,
            "stream": stream,
            "track_opens": track_opens,
            "track_clicks": track_clicks,
        }.items()
        if v is not None
    }
    authorization = _authorization(authorized_domains, authorized_senders, sender_mode)
    if not settings and not authorization:
        raise click.ClickException(
            "nothing to change: give --name, --note, --priority, --ip, --ip-only, "
            "--authorized-domains, --authorized-senders, --sender-mode, --stream, "
            "--track-opens or --track-clicks"
        )
    if settings:
        try:
            accounts_service.update(account, **settings)
        except AccountError as exc:
            raise click.ClickException(str(exc)) from None
    senders_service.authorize(account, authorization)
    data = account_dict(SmtpAccount.get_by_id(account.id))
    emit(
        data,
        as_json,
        f"{data['username']} ({data['name']}): priority {data['priority']}, "
        f"networks: {', '.join(data['ip_rules']) or '(any)'}{' (IP-only)' if data['ip_only'] else ''}"
        f"\nauthorized domains: {'; '.join(data['authorized_domains']) or '(any verified)'}"
        f"\nauthorized senders: {'; '.join(data['authorized_senders']) or '(any verified)'}"
        f"\nunauthorized senders: {data['sender_mode']}"
        f"\nstream: {data['stream']}, tracking: {_tracking_text(data)}",
    )


@accounts.command("reset-password")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def accounts_reset_password(ref: str, as_json: bool) -> None:
    """Give an account a new password (the old one stops working at once)."""
    account = get_account(ref)
    password = accounts_service.reset_password(account)
    emit(
        {"id": account.id, "username": account.username, "password": password},
        as_json,
        f"username: {account.username}\npassword: {password}\n(shown only now)",
    )


def _set_active(ref: str, active: bool) -> None:
    account = get_account(ref)
    accounts_service.set_active(account, active)
    click.echo(f"{account.username} {'enabled' if active else 'disabled'}")


@accounts.command("disable")
@click.argument("ref")
@with_appcontext
def accounts_disable(ref: str) -> None:
    """Disable an account: its logins, and its open sessions' next MAIL FROM, are refused."""
    _set_active(ref, False)


@accounts.command("enable")
@click.argument("ref")
@with_appcontext
def accounts_enable(ref: str) -> None:
    """Enable a disabled account."""
    _set_active(ref, True)


@accounts.command("delete")
@click.argument("ref")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@with_appcontext
def accounts_delete(ref: str, yes: bool) -> None:
    """Delete an account (its messages stay in the log)."""
    account = get_account(ref)
    if not yes:
        click.confirm(f"Delete {account.username}?", abort=True)
    accounts_service.delete(account)
    click.echo(f"deleted {account.username}")

"""`appliance` commands: lists and their members (docs/campaigns-and-lists.md)."""

from __future__ import annotations

from pathlib import Path

import click
from flask.cli import with_appcontext

from .. import campaigns
from .. import lists as service
from ..models import MEMBER_STATUSES
from .accounts import get_account
from .base import cli, emit


@cli.group("lists")
def lists_group() -> None:
    """Lists: the recipients of an account's mail join one (mailing_list_id header, else the account's
    Transactional Campaign Recipients)."""


def _run(action, *args, **kwargs):
    try:
        return action(*args, **kwargs)
    except service.ListError as exc:
        raise click.ClickException(str(exc)) from None


def _described(rows) -> list[dict]:
    return service.describe(rows, campaigns.figures)


def _text(row: dict) -> str:
    statuses = " ".join(f"{name}={row['statuses'][name]}" for name in MEMBER_STATUSES)
    figures = " ".join(f"{name}={row[name]}" for name in campaigns.FIGURES)
    accounts = f" accounts={','.join(row['accounts'])}" if row["accounts"] else ""
    return f"{row['id']}  {row['name']}{accounts}\n    members={row['members']} {statuses}\n    {figures}"


@lists_group.command("create")
@click.argument("name")
@click.option("--account", "account_refs", multiple=True, metavar="ID", help="Tie this account (id or username).")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def lists_create(name: str, account_refs: tuple[str, ...], as_json: bool) -> None:
    """Make a list; its id is what apps put in the mailing_list_id header."""
    tied = [get_account(ref) for ref in account_refs]
    (row,) = _described([_run(service.create, name, tied)])
    emit(row, as_json, _text(row))


@lists_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def lists_list(as_json: bool) -> None:
    """List the lists, newest first, with their members per status and their figures."""
    rows = _described(service.listed())
    emit(rows, as_json, "\n".join(_text(r) for r in rows) or "no lists")


@lists_group.command("show")
@click.argument("list_id")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def lists_show(list_id: str, as_json: bool) -> None:
    """Show a list: tied accounts, members per status, figures in all and per day."""
    found = _run(service.find, list_id)
    (row,) = _described([found])
    row["days"] = campaigns.daily(service.LIST, found.id)
    days = "\n".join(f"    {d['day']}  " + " ".join(f"{n}={d[n]}" for n in campaigns.FIGURES) for d in row["days"])
    emit(row, as_json, _text(row) + ("\n" + days if days else ""))


@lists_group.command("members")
@click.argument("list_id")
@click.option("--status", type=click.Choice(MEMBER_STATUSES), default=None)
@click.option("--search", default="", help="Only addresses that contain this.")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def lists_members(list_id: str, status: str | None, search: str, as_json: bool) -> None:
    """List a list's members in address order."""
    rows = [service.member_dict(m) for m in _run(service.members, list_id, status=status or "", search=search)]
    text = "\n".join(f"{r['email']:<40} {r['status']:<12} {r['source']:<6} {r['created_at']}" for r in rows)
    emit(rows, as_json, text or "no members")


@lists_group.command("import")
@click.argument("list_id")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def lists_import(list_id: str, file: Path, as_json: bool) -> None:
    """Add the addresses of a CSV file's `email` column; bad rows are reported by line number, the good
    ones kept. Addresses already on the list keep their status."""
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise click.ClickException(f"cannot read {file}: {exc.strerror}") from None
    report = _run(service.import_csv, list_id, data)
    lines = [f"{report.added} added, {report.existing} already on the list, {report.bad_count} bad rows"]
    lines += [f"line {line}: {reason}" for line, reason in report.bad]
    if report.bad_count > len(report.bad):
        lines.append(f"… and {report.bad_count - len(report.bad)} more bad rows")
    emit(report.as_dict(), as_json, "\n".join(lines))


@lists_group.command("export")
@click.argument("list_id")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path), required=False)
@with_appcontext
def lists_export(list_id: str, file: Path | None) -> None:
    """Write a list's members as CSV (email, status, source, created_at, updated_at) to FILE, or stdout."""
    chunks = _run(lambda: list(service.export_csv(list_id)))
    if file is None:
        click.echo("".join(chunks), nl=False)
        return
    try:
        file.write_text("".join(chunks), encoding="utf-8")
    except OSError as exc:
        raise click.ClickException(f"cannot write {file}: {exc.strerror}") from None
    click.echo(f"{len(chunks) - 1} members written to {file}")


@lists_group.command("rename")
@click.argument("list_id")
@click.argument("name")
@with_appcontext
def lists_rename(list_id: str, name: str) -> None:
    """Give a list another name."""
    row = _run(service.rename, list_id, name)
    click.echo(f"list {row.id} is now {row.name!r}")


@lists_group.command("tie")
@click.argument("list_id")
@click.argument("account_ref", metavar="ACCOUNT")
@with_appcontext
def lists_tie(list_id: str, account_ref: str) -> None:
    """Tie an account to a list: its mail's figures show under the list."""
    account = get_account(account_ref)
    row = _run(service.tie, list_id, account)
    click.echo(f"account {account.username} is tied to list {row.id}")


@lists_group.command("untie")
@click.argument("list_id")
@click.argument("account_ref", metavar="ACCOUNT")
@with_appcontext
def lists_untie(list_id: str, account_ref: str) -> None:
    """Untie an account from a list."""
    account = get_account(account_ref)
    row = _run(service.untie, list_id, account)
    click.echo(f"account {account.username} is no longer tied to list {row.id}")

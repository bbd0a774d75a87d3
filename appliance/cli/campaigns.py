"""`appliance` commands: campaigns (docs/campaigns-and-lists.md)."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from .. import campaigns as service
from .base import cli, emit


@cli.group()
def campaigns() -> None:
    """Campaigns that mail is filed under (campaign_guid header, exact subject, else the account's default)."""


def _text(row: dict) -> str:
    shown = " ".join(f"{name}={row[name]}" for name in service.FIGURES)
    archived = " (archived)" if row["archived"] else ""
    subject = f" subject={row['subject']!r}" if row["subject"] else ""
    connected = f" list={row['list']}" if row["list"] else ""
    return f"{row['id']}  {row['name']}{archived}{subject}{connected}\n    {shown}"


def _run(action, *args):
    try:
        return action(*args)
    except service.CampaignError as exc:
        raise click.ClickException(str(exc)) from None


@campaigns.command("create")
@click.argument("name")
@click.option("--subject", default=None, help="File mail whose Subject: is exactly this under the campaign.")
@click.option("--list", "list_id", default="", help="The list its mail's recipients join (its connected list).")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def campaigns_create(name: str, subject: str | None, list_id: str, as_json: bool) -> None:
    """Make a campaign; its id is what apps put in the campaign_guid header."""
    row = service.describe(_run(service.create, name, subject, list_id))
    emit(row, as_json, _text(row))


@campaigns.command("list")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def campaigns_list(as_json: bool) -> None:
    """List campaigns, newest first, with their figures."""
    found = service.listed()
    counted = service.figures(service.CAMPAIGN, [c.id for c in found])
    rows = [service.describe(c, counted[c.id]) for c in found]
    emit(rows, as_json, "\n".join(_text(r) for r in rows) or "no campaigns")


@campaigns.command("show")
@click.argument("campaign_id")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def campaigns_show(campaign_id: str, as_json: bool) -> None:
    """Show a campaign's figures, in all and per day."""
    found = _run(service.find, campaign_id)
    row = {**service.describe(found), "days": service.daily(service.CAMPAIGN, found.id)}
    days = "\n".join(f"    {d['day']}  " + " ".join(f"{n}={d[n]}" for n in service.FIGURES) for d in row["days"])
    emit(row, as_json, _text(row) + ("\n" + days if days else ""))


@campaigns.command("rename")
@click.argument("campaign_id")
@click.argument("name")
@with_appcontext
def campaigns_rename(campaign_id: str, name: str) -> None:
    """Give a campaign another name."""
    row = _run(service.rename, campaign_id, name)
    click.echo(f"campaign {row.id} is now {row.name!r}")


@campaigns.command("subject")
@click.argument("campaign_id")
@click.argument("subject")
@with_appcontext
def campaigns_subject(campaign_id: str, subject: str) -> None:
    """Change the exact Subject: a campaign files mail by ("" for none)."""
    row = _run(service.set_subject, campaign_id, subject)
    click.echo(
        f"campaign {row.id} files mail with the subject {row.subject!r}"
        if row.subject
        else f"campaign {row.id} files mail by its id only"
    )


@campaigns.command("archive")
@click.argument("campaign_id")
@click.option("--undo", is_flag=True, help="Bring an archived campaign back.")
@with_appcontext
def campaigns_archive(campaign_id: str, undo: bool) -> None:
    """Archive a campaign: its subject files no more mail (campaign_guid still does)."""
    row = _run(service.archive, campaign_id, not undo)
    click.echo(f"campaign {row.id} is {'archived' if row.archived else 'no longer archived'}")


@campaigns.command("connect")
@click.argument("campaign_id")
@click.argument("list_id", metavar="LIST_ID")
@with_appcontext
def campaigns_connect(campaign_id: str, list_id: str) -> None:
    """Connect a list to a campaign ("" for none): the recipients of its mail join the list, unless the
    message names one in mailing_list_id."""
    row = _run(service.connect, campaign_id, list_id)
    click.echo(
        f"campaign {row.id}: "
        + (f"its mail's recipients join list {row.mailing_list}" if row.mailing_list else "no list")
    )

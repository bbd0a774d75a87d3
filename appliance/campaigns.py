"""Campaigns: create, rename, archive, show with their figures; and the filing of each message of an
account under a campaign and a list (docs/campaigns-and-lists.md).

A message is filed under the campaign its ``campaign_guid`` header names (also read as
``X-Campaign-ID``), else under the campaign whose subject equals its Subject: exactly, else under its
account's "Transactional Campaign", made on first use. Its recipients join the list its
``mailing_list_id`` header names, else the list connected to its campaign (Moosend's rule), else the
account's "Transactional Campaign Recipients" (appliance/lists.py). A named campaign or list that does
not exist files nothing: the next rule applies and an alert says why.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from typing import Any

from peewee import fn

from . import alerts, audit, clock, db, intake, lists
from .models import Campaign, GroupedCount, SmtpAccount

TRANSACTIONAL = "Transactional Campaign"  # the name of an account's default campaign (Moosend's)
CAMPAIGN = "campaign"  # GroupedCount.kind of a campaign's figures
CAMPAIGN_UNKNOWN = "campaign-unknown"  # alert kind: a campaign_guid named no campaign
LIST_UNKNOWN = "list-unknown"  # alert kind: a mailing_list_id named no list
# The figures shown for each campaign: those of the analytics (opened and clicked: first human ones).
FIGURES = ("sent", "delivered", "bounced", "opened", "clicked", "unsubscribed", "complained")
UNIQUE = ("opened", "clicked")
MAX_TEXT = 255


class CampaignError(ValueError):
    """A request about campaigns that cannot be done, saying why in a sentence."""


def new_id() -> str:
    """A campaign's or a list's id: a random UUID in lower case (what Moosend's ids look like)."""
    return str(uuid.uuid4())


def _text(value: str, what: str, *, required: bool) -> str:
    value = value.strip()
    if required and not value:
        raise CampaignError(f"the {what} may not be empty")
    if len(value) > MAX_TEXT:
        raise CampaignError(f"the {what} is longer than {MAX_TEXT} characters")
    if any(c in value for c in "\r\n"):
        raise CampaignError(f"the {what} must be one line")
    return value


def _check_subject(subject: str, except_id: str | None = None) -> None:
    taken = Campaign.select().where((Campaign.subject == subject) & ~Campaign.archived)
    if except_id is not None:
        taken = taken.where(Campaign.id != except_id)
    other = taken.first()
    if other is not None:
        raise CampaignError(f"campaign {other.name!r} ({other.id}) already has the subject {subject!r}")


def create(name: str, subject: str | None = None, mailing_list: str = "") -> Campaign:
    """Make a campaign; mail is filed under it by its id (campaign_guid) and, when ``subject`` is given,
    by that exact Subject:; the recipients of its mail join ``mailing_list`` (its connected list; "":
    none). Raise CampaignError when the name or subject cannot be used, another campaign that is not
    archived has that subject, or there is no such list."""
    name = _text(name, "name", required=True)
    subject = _text(subject or "", "subject", required=False) or None
    if subject is not None:
        _check_subject(subject)
    connected = _list(mailing_list)
    row = Campaign.create(id=new_id(), name=name, subject=subject, mailing_list=connected, created_at=clock.now())
    audit.record(
        "campaign.create",
        f"campaign {row.id}",
        f"name {name!r}" + (f", subject {subject!r}" if subject else "") + (f", list {connected}" if connected else ""),
    )
    return row


def _list(list_id: str) -> str | None:
    list_id = list_id.strip().lower()
    if list_id and not lists.exists(list_id):
        raise CampaignError(f"there is no list {list_id!r} (`appliance lists list` shows them)")
    return list_id or None


def find(campaign_id: str) -> Campaign:
    """The campaign of this id (any case, spaces around ignored); raise CampaignError when there is none."""
    row = Campaign.get_or_none(Campaign.id == campaign_id.strip().lower())
    if row is None:
        raise CampaignError(f"there is no campaign {campaign_id.strip()!r} (`appliance campaigns list` shows them)")
    return row


def rename(campaign_id: str, name: str) -> Campaign:
    row = find(campaign_id)
    row.name = _text(name, "name", required=True)
    row.save()
    audit.record("campaign.rename", f"campaign {row.id}", f"name {row.name!r}")
    return row


def set_subject(campaign_id: str, subject: str) -> Campaign:
    """Change the subject its mail is matched by ("": none)."""
    row = find(campaign_id)
    subject = _text(subject, "subject", required=False)
    if subject and not row.archived:
        _check_subject(subject, except_id=row.id)
    row.subject = subject or None
    row.save()
    audit.record("campaign.subject", f"campaign {row.id}", f"subject {subject!r}")
    return row


def connect(campaign_id: str, list_id: str) -> Campaign:
    """Connect a list to a campaign ("": none): the recipients of its mail join the list, unless their
    message names one in mailing_list_id. Raise CampaignError when there is no such list."""
    row = find(campaign_id)
    row.mailing_list = _list(list_id)
    row.save()
    audit.record("campaign.list", f"campaign {row.id}", f"list {row.mailing_list}" if row.mailing_list else "no list")
    return row


def archive(campaign_id: str, archived: bool = True) -> Campaign:
    """Archive a campaign (its subject matches no more mail; its id still does), or bring it back."""
    row = find(campaign_id)
    if not archived and row.subject:
        _check_subject(row.subject, except_id=row.id)
    row.archived = archived
    row.save()
    audit.record("campaign.archive" if archived else "campaign.unarchive", f"campaign {row.id}")
    return row


def listed(include_archived: bool = True) -> list[Campaign]:
    """Campaigns, newest first."""
    query = Campaign.select().order_by(Campaign.created_at.desc(), Campaign.id)
    return list(query if include_archived else query.where(~Campaign.archived))


def figures(kind: str, ids: list[str]) -> dict[str, dict[str, int]]:
    """Each group's figures (``FIGURES``) from the roll-up: for opened and clicked, the recipients' first
    human ones; every id of ``ids`` has its dict, zeros where nothing happened."""
    found: dict[str, dict[str, int]] = {i: dict.fromkeys(FIGURES, 0) for i in ids}
    if not ids:
        return found
    rows = (
        GroupedCount.select(
            GroupedCount.group, GroupedCount.metric, fn.SUM(GroupedCount.count), fn.SUM(GroupedCount.uniques)
        )
        .where(GroupedCount.kind == kind, GroupedCount.group.in_(ids), GroupedCount.metric.in_(FIGURES))
        .group_by(GroupedCount.group, GroupedCount.metric)
        .tuples()
    )
    for group, metric, count, uniques in rows:
        found[group][metric] = int(uniques if metric in UNIQUE else count)
    return found


def daily(kind: str, group: str) -> list[dict[str, Any]]:
    """A group's figures per day (UTC), oldest first: each ``day`` and the ``FIGURES``."""
    by_day: dict[dt.date, dict[str, int]] = defaultdict(lambda: dict.fromkeys(FIGURES, 0))
    rows = GroupedCount.select(GroupedCount.hour, GroupedCount.metric, GroupedCount.count, GroupedCount.uniques).where(
        GroupedCount.kind == kind, GroupedCount.group == group, GroupedCount.metric.in_(FIGURES)
    )
    for hour, metric, count, uniques in rows.tuples():
        by_day[hour.date()][metric] += uniques if metric in UNIQUE else count
    return [{"day": day.isoformat(), **by_day[day]} for day in sorted(by_day)]


def describe(row: Campaign, counted: dict[str, int] | None = None) -> dict[str, Any]:
    """A campaign as the CLI's JSON and the dashboard show it, with its figures."""
    return {
        "id": row.id,
        "name": row.name,
        "subject": row.subject,
        "account": row.default_for_id,
        "archived": row.archived,
        "list": row.mailing_list,
        "created_at": row.created_at.isoformat(sep=" ", timespec="seconds"),
        **(counted if counted is not None else figures(CAMPAIGN, [row.id])[row.id]),
    }


def default_for(account_id: int) -> tuple[str, str | None]:
    """The id of the account's "Transactional Campaign", made on first use (in a transaction of its own:
    two front ends making it at once end with one), and its connected list (None: none)."""

    def read() -> tuple[str, str | None] | None:
        return (
            Campaign.select(Campaign.id, Campaign.mailing_list)
            .where(Campaign.default_for == account_id)
            .tuples()
            .first()
        )

    found = read()
    if found is None:
        with db.atomic_write():
            Campaign.insert(
                id=new_id(), name=TRANSACTIONAL, default_for=account_id, created_at=clock.now()
            ).on_conflict_ignore().execute()
        found = read()
    return found


def _alert(settings: dict, kind: str, account_id: int, text: str) -> None:
    username = SmtpAccount.select(SmtpAccount.username).where(SmtpAccount.id == account_id).scalar()
    alerts.raise_alert(settings, kind, f"account {username}", text)


def file(settings: dict, item: intake.Incoming) -> None:
    """Set the campaign and the list an account's message is filed under, and the list its recipients
    join (the writer thread, before it is stored)."""
    if item.account_id is None or item.direction != "outbound":
        return
    connected = _file_campaign(settings, item)
    _file_list(settings, item, connected)


def _file_list(settings: dict, item: intake.Incoming, connected: str | None) -> None:
    if item.list_send:  # mail to a list address: its members are the recipients, nobody joins
        item.list_id = item.list_send
        return
    if item.list_ref:
        if lists.exists(item.list_ref):
            item.list_id = item.members_list = item.list_ref
            return
        _alert(
            settings,
            LIST_UNKNOWN,
            item.account_id,
            f"mailing_list_id {item.list_ref[:60]!r} names no list: its recipients join the account's "
            f"{lists.TRANSACTIONAL_RECIPIENTS} (a header never makes a list)",
        )
    item.members_list = connected or lists.default_for(item.account_id)
    item.list_id = lists.tied_list(item.account_id) or item.members_list


def _file_campaign(settings: dict, item: intake.Incoming) -> str | None:
    """File the message under its campaign; return the campaign's connected list (None: none)."""
    if item.campaign_ref:
        named = Campaign.select(Campaign.mailing_list).where(Campaign.id == item.campaign_ref).tuples().first()
        if named is not None:
            item.campaign_id = item.campaign_ref
            return named[0]
        _alert(
            settings,
            CAMPAIGN_UNKNOWN,
            item.account_id,
            f"campaign_guid {item.campaign_ref[:60]!r} names no campaign: the message is filed by its subject "
            "or under the account's Transactional Campaign",
        )
    if item.subject and len(item.subject) <= MAX_TEXT:
        matched = (
            Campaign.select(Campaign.id, Campaign.mailing_list)
            .where((Campaign.subject == item.subject) & ~Campaign.archived)
            .order_by(Campaign.created_at)
            .tuples()
            .first()
        )
        if matched is not None:
            item.campaign_id = matched[0]
            return matched[1]
    item.campaign_id, connected = default_for(item.account_id)
    return connected

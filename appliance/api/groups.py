"""``/api/v1/lists`` and ``/api/v1/campaigns`` (docs/campaigns-and-lists.md), as `appliance lists`
and `appliance campaigns` show them (lists.describe, campaigns.describe). An account's key reads
the lists tied to it; making lists, and campaigns (named by id from any account's mail, their
figures counting all of it), are an admin key's."""

from __future__ import annotations

from spectree import Response

from .. import campaigns, lists
from ..models import MANAGE, READ, Campaign, ListAccount, MailingList, SmtpAccount
from . import bp, needs, own_account_id, problems
from .common import cut, json_body, not_found, paginate, query
from .manage_accounts import CHANGE_REFUSALS, FOUND_REFUSALS, REFUSALS
from .schemas import (
    CampaignChange,
    CampaignCreate,
    CampaignOut,
    CampaignPage,
    ListCreate,
    ListOut,
    ListPage,
    MemberPage,
    MemberQuery,
    PageQuery,
    ProblemDocument,
)
from .spec import spec


def _lists_seen():
    """The lists the key may see: every list (an admin key), or those tied to its account."""
    rows = MailingList.select().order_by(MailingList.created_at.desc(), MailingList.id)
    own = own_account_id()
    if own is None:
        return rows
    tied = ListAccount.select(ListAccount.list).where(ListAccount.account == own)
    return rows.where(MailingList.id.in_(tied))


def _list(list_id: str) -> MailingList:
    row = _lists_seen().where(MailingList.id == list_id.strip().lower()).first()
    if row is None:
        raise not_found("list", list_id)
    return row


@bp.get("/lists")
@needs(READ)
@spec.validate(query=PageQuery, resp=Response(HTTP_200=ListPage, **REFUSALS), tags=["lists"], skip_validation=True)
def api_lists():
    """List the lists, newest first, with members per status and their figures

    An account's key sees the lists tied to its account.
    """
    asked = query(PageQuery)
    found, next_page = paginate(_lists_seen(), asked.page, asked.limit)
    return {"lists": lists.describe(found, campaigns.figures), "next_page": next_page}


@bp.post("/lists")
@needs(MANAGE, admin=True)
@spec.validate(
    json=ListCreate, resp=Response(HTTP_201=ListOut, **CHANGE_REFUSALS), tags=["lists"], skip_validation=True
)
def api_lists_create():
    """Make a list, tied to the accounts given (they may send to `<id>@LISTS_DOMAIN`)"""
    given = json_body(ListCreate)
    tied = []
    for n, account_id in enumerate(given.accounts):
        account = SmtpAccount.get_or_none(SmtpAccount.id == account_id)
        if account is None:
            raise problems.invalid([{"field": f"accounts[{n}]", "detail": f"there is no SMTP account {account_id}"}])
        tied.append(account)
    try:
        row = lists.create(given.name, tied)
    except lists.ListError as exc:
        raise problems.invalid([{"field": "name", "detail": str(exc)}]) from None
    (shown,) = lists.describe([row], campaigns.figures)
    return shown, 201, {"Location": f"/api/v1/lists/{row.id}"}


@bp.get("/lists/<list_id>")
@needs(READ)
@spec.validate(resp=Response(HTTP_200=ListOut, **FOUND_REFUSALS), tags=["lists"], skip_validation=True)
def api_list(list_id: str):
    """A list with its members per status, tied accounts and figures"""
    (shown,) = lists.describe([_list(list_id)], campaigns.figures)
    return shown


@bp.get("/lists/<list_id>/members")
@needs(READ)
@spec.validate(
    query=MemberQuery, resp=Response(HTTP_200=MemberPage, **FOUND_REFUSALS), tags=["lists"], skip_validation=True
)
def api_list_members(list_id: str):
    """A list's members in address order (filtered by status or by text in the address)"""
    row = _list(list_id)
    asked = query(MemberQuery)
    try:
        found = lists.members(
            row.id,
            status=asked.status,
            search=asked.search,
            limit=asked.limit + 1,
            offset=(asked.page - 1) * asked.limit,
        )
    except lists.ListError as exc:
        raise problems.invalid([{"field": "status", "detail": str(exc)}]) from None
    rows, next_page = cut(found, asked.page, asked.limit)
    return {"members": [lists.member_dict(m) for m in rows], "next_page": next_page}


@bp.get("/campaigns")
@needs(READ, admin=True)
@spec.validate(
    query=PageQuery, resp=Response(HTTP_200=CampaignPage, **REFUSALS), tags=["campaigns"], skip_validation=True
)
def api_campaigns():
    """List the campaigns, newest first, with their figures"""
    asked = query(PageQuery)
    rows = Campaign.select().order_by(Campaign.created_at.desc(), Campaign.id)
    found, next_page = paginate(rows, asked.page, asked.limit)
    counted = campaigns.figures(campaigns.CAMPAIGN, [c.id for c in found])
    return {"campaigns": [campaigns.describe(c, counted[c.id]) for c in found], "next_page": next_page}


@bp.post("/campaigns")
@needs(MANAGE, admin=True)
@spec.validate(
    json=CampaignCreate,
    resp=Response(HTTP_201=CampaignOut, **CHANGE_REFUSALS),
    tags=["campaigns"],
    skip_validation=True,
)
def api_campaigns_create():
    """Make a campaign (apps file mail under it with its id as campaign_guid, or by its subject)"""
    given = json_body(CampaignCreate)
    try:
        row = campaigns.create(given.name, given.subject)
    except campaigns.CampaignError as exc:
        field = "name" if str(exc).startswith("the name") else "subject"
        raise problems.invalid([{"field": field, "detail": str(exc)}]) from None
    return campaigns.describe(row), 201, {"Location": f"/api/v1/campaigns/{row.id}"}


@bp.get("/campaigns/<campaign_id>")
@needs(READ, admin=True)
@spec.validate(resp=Response(HTTP_200=CampaignOut, **FOUND_REFUSALS), tags=["campaigns"], skip_validation=True)
def api_campaign(campaign_id: str):
    """A campaign with its figures"""
    try:
        return campaigns.describe(campaigns.find(campaign_id))
    except campaigns.CampaignError:
        raise not_found("campaign", campaign_id) from None


@bp.patch("/campaigns/<campaign_id>")
@needs(MANAGE, admin=True)
@spec.validate(
    json=CampaignChange,
    resp=Response(HTTP_200=CampaignOut, **CHANGE_REFUSALS, HTTP_404=ProblemDocument),
    tags=["campaigns"],
    skip_validation=True,
)
def api_campaign_update(campaign_id: str):
    """Rename a campaign, change the subject its mail is matched by, archive it or bring it back"""
    try:
        row = campaigns.find(campaign_id)
    except campaigns.CampaignError:
        raise not_found("campaign", campaign_id) from None
    given = json_body(CampaignChange)
    steps = (("name", campaigns.rename), ("subject", campaigns.set_subject), ("archived", campaigns.archive))
    for field, change in steps:
        value = getattr(given, field)
        if field in given.model_fields_set and value is not None:
            try:
                change(row.id, value)
            except campaigns.CampaignError as exc:
                raise problems.invalid([{"field": field, "detail": str(exc)}]) from None
    return campaigns.describe(campaigns.find(row.id))


def _tied_account(account_id: int) -> SmtpAccount:
    account = SmtpAccount.get_or_none(SmtpAccount.id == account_id)
    if account is None:
        raise not_found("account", account_id)
    return account


@bp.put("/lists/<list_id>/accounts/<int:account_id>")
@needs(MANAGE, admin=True)
@spec.validate(resp=Response(HTTP_200=ListOut, **FOUND_REFUSALS), tags=["lists"], skip_validation=True)
def api_list_tie(list_id: str, account_id: int):
    """Tie an account to a list: it may send to the list's address, its mail's figures show under it"""
    row = lists.tie(_list(list_id).id, _tied_account(account_id))
    (shown,) = lists.describe([row], campaigns.figures)
    return shown


@bp.delete("/lists/<list_id>/accounts/<int:account_id>")
@needs(MANAGE, admin=True)
@spec.validate(resp=Response(HTTP_200=ListOut, **FOUND_REFUSALS), tags=["lists"], skip_validation=True)
def api_list_untie(list_id: str, account_id: int):
    """Untie an account from a list"""
    try:
        row = lists.untie(_list(list_id).id, _tied_account(account_id))
    except lists.ListError:
        raise not_found("tie of that account to the list", account_id) from None
    (shown,) = lists.describe([row], campaigns.figures)
    return shown

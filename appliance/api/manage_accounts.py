"""``/api/v1/accounts``: the SMTP accounts, through the functions the dashboard and the CLI call
(appliance/accounts.py). Creating, changing, deleting and new passwords need an admin key; an
account's key reads its own account alone. A password is in the answer of a creation and of a
reset, never again."""

from __future__ import annotations

from spectree import Response

from .. import accounts, senders
from ..models import MANAGE, READ, SmtpAccount
from . import bp, needs, own_account_id, problems
from .common import json_body, not_found, paginate, query
from .schemas import (
    AccountCreate,
    AccountOut,
    AccountPage,
    AccountUpdate,
    AccountWithPassword,
    PageQuery,
    ProblemDocument,
)
from .spec import spec

REFUSALS = {f"HTTP_{s}": ProblemDocument for s in (401, 403, 422, 429)}
CHANGE_REFUSALS = REFUSALS | {"HTTP_400": ProblemDocument}
FOUND_REFUSALS = REFUSALS | {"HTTP_404": ProblemDocument}


def shown(model, row) -> dict:
    return model.model_validate(row).model_dump(mode="json")


def account_or_404(account_id: int) -> SmtpAccount:
    """The account, if the key may see it (an admin key: any; an account's key: its own)."""
    own = own_account_id()
    row = SmtpAccount.get_or_none(SmtpAccount.id == account_id)
    if row is None or (own is not None and row.id != own):
        raise not_found("account", account_id)
    return row


def _authorization(given) -> dict[str, str]:
    """The sender authorization fields given, checked as the dashboard checks them (nothing saved)."""
    try:
        return senders.authorization(
            None if given.authorized_domains is None else " ".join(given.authorized_domains),
            None if given.authorized_senders is None else " ".join(given.authorized_senders),
            given.sender_mode,
        )
    except senders.AuthorizationError as exc:
        raise _refused(exc) from None


def _refused(exc: accounts.AccountError | senders.AuthorizationError) -> problems.Problem:
    return problems.invalid(
        [{"field": k, "detail": v} for k, v in exc.errors.items()] or [{"field": "body", "detail": str(exc)}]
    )


@bp.get("/accounts")
@needs(READ)
@spec.validate(
    query=PageQuery, resp=Response(HTTP_200=AccountPage, **REFUSALS), tags=["accounts"], skip_validation=True
)
def api_accounts():
    """List the SMTP accounts

    An admin key sees every account; an account's key sees its own.
    """
    asked = query(PageQuery)
    rows = SmtpAccount.select().order_by(SmtpAccount.id)
    own = own_account_id()
    if own is not None:
        rows = rows.where(SmtpAccount.id == own)
    found, next_page = paginate(rows, asked.page, asked.limit)
    return {"accounts": [shown(AccountOut, a) for a in found], "next_page": next_page}


@bp.post("/accounts")
@needs(MANAGE, admin=True)
@spec.validate(
    json=AccountCreate,
    resp=Response(HTTP_201=AccountWithPassword, **CHANGE_REFUSALS),
    tags=["accounts"],
    skip_validation=True,
)
def api_accounts_create():
    """Create an SMTP account

    The answer has its password, this once (as the dashboard and `appliance accounts create` show it).
    """
    given = json_body(AccountCreate)
    authorization = _authorization(given)
    try:
        account, password = accounts.create(
            given.name,
            networks=given.ip_rules or (),
            ip_only=bool(given.ip_only),
            priority=3 if given.priority is None else given.priority,
            note=given.note or "",
            stream=given.stream or "transactional",
            track_opens=given.track_opens,
            track_clicks=given.track_clicks,
        )
    except accounts.AccountError as exc:
        raise _refused(exc) from None
    senders.authorize(account, authorization)
    data = shown(AccountOut, SmtpAccount.get_by_id(account.id)) | {"password": password}
    return data, 201, {"Location": f"/api/v1/accounts/{account.id}"}


@bp.get("/accounts/<int:account_id>")
@needs(READ)
@spec.validate(resp=Response(HTTP_200=AccountOut, **FOUND_REFUSALS), tags=["accounts"], skip_validation=True)
def api_account(account_id: int):
    """An SMTP account (never its password)"""
    return shown(AccountOut, account_or_404(account_id))


@bp.patch("/accounts/<int:account_id>")
@needs(MANAGE, admin=True)
@spec.validate(
    json=AccountUpdate,
    resp=Response(HTTP_200=AccountOut, **CHANGE_REFUSALS, HTTP_404=ProblemDocument),
    tags=["accounts"],
    skip_validation=True,
)
def api_account_update(account_id: int):
    """Change an SMTP account

    Only the fields given change, checked as the dashboard checks them (the sender authorization
    too: `authorized_domains`, `authorized_senders`, `sender_mode`); `active: false` disables it.
    """
    account = account_or_404(account_id)
    given = json_body(AccountUpdate)
    changes = {k: getattr(given, k) for k in given.model_fields_set}
    for field in ("authorized_domains", "authorized_senders", "sender_mode"):
        changes.pop(field, None)
    if "ip_rules" in changes:
        changes["networks"] = changes.pop("ip_rules") or []
    unset = [k for k, v in changes.items() if v is None and k not in ("track_opens", "track_clicks")]
    if unset:
        raise problems.invalid([{"field": k, "detail": "leave it out to keep it; null is not a value"} for k in unset])
    authorization = _authorization(given)
    try:
        if changes or not authorization:
            accounts.update(account, **changes)
    except accounts.AccountError as exc:
        raise _refused(exc) from None
    senders.authorize(account, authorization)
    return shown(AccountOut, SmtpAccount.get_by_id(account.id))


@bp.delete("/accounts/<int:account_id>")
@needs(MANAGE, admin=True)
@spec.validate(resp=Response("HTTP_204", **FOUND_REFUSALS), tags=["accounts"], skip_validation=True)
def api_account_delete(account_id: int):
    """Delete an SMTP account (its messages stay in the log; its API keys go)"""
    accounts.delete(account_or_404(account_id))
    return "", 204


@bp.post("/accounts/<int:account_id>/password")
@needs(MANAGE, admin=True)
@spec.validate(resp=Response(HTTP_200=AccountWithPassword, **FOUND_REFUSALS), tags=["accounts"], skip_validation=True)
def api_account_password(account_id: int):
    """Give an SMTP account a new password

    The old one stops working at once; the answer has the new one, this once.
    """
    account = account_or_404(account_id)
    password = accounts.reset_password(account)
    return shown(AccountOut, SmtpAccount.get_by_id(account.id)) | {"password": password}

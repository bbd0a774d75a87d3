"""API keys: an SMTP account's on its page, and the admins' keys (which act for the whole
appliance, docs/api.md#who-may-do-what) on their own page: create (the key shown once,
post-redirect-get as the account's password is) and revoke."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from .. import api_keys
from ..models import ApiKey, SmtpAccount
from . import shown_once
from .permissions import admin_required

bp = Blueprint("api_keys", __name__, url_prefix="/accounts/<int:account_id>/api-keys")
admin_bp = Blueprint("admin_keys", __name__, url_prefix="/api-keys")


def _account(account_id: int) -> SmtpAccount:
    account = SmtpAccount.get_or_none(SmtpAccount.id == account_id)
    if account is None:
        abort(404)
    return account


def _edit_page(account: SmtpAccount):
    return redirect(url_for("accounts.accounts_edit", account_id=account.id) + "#api-keys")


@bp.post("/")
@admin_required
def api_keys_create(account_id: int):
    """Create a key and show it once (on the GET this redirects to)."""
    account = _account(account_id)
    try:
        row, key = api_keys.create(account, request.form.get("scope", ""), request.form.get("name", ""))
    except api_keys.ApiKeyError as exc:
        flash(f"No key was created: {exc}.")
        return _edit_page(account)
    shown_once.keep("api-key", account.id, key, key_id=row.id)
    return redirect(url_for("api_keys.api_keys_new", account_id=account.id))


@bp.get("/new")
@admin_required
def api_keys_new(account_id: int):
    """Show the key just made, this once; after that, say that a new key is the way."""
    account = _account(account_id)
    kept = shown_once.take("api-key", account.id)
    if kept is None:
        flash("An API key is shown once, when it is made. Create a new one (and revoke the lost one).")
        return _edit_page(account)
    key, facts = kept
    row = ApiKey.get_by_id(facts["key_id"])
    page = render_template(
        "accounts/api_key_secret.html", account=account, row=row, key=key, base_url=current_app.config["PUBLIC_URL"]
    )
    return page, 200, {"Cache-Control": "no-store"}


@bp.post("/<int:key_id>/revoke")
@admin_required
def api_keys_revoke(account_id: int, key_id: int):
    """Revoke a key of this account: the next request with it is refused."""
    account = _account(account_id)
    row = ApiKey.get_or_none((ApiKey.id == key_id) & (ApiKey.account == account.id))
    if row is None:
        abort(404)
    if api_keys.revoke(row):
        flash(f"API key {row.prefix} is revoked: requests with it are refused from now on.")
    return _edit_page(account)


# -- the admins' keys ----------------------------------------------------------------------------
def _admin_keys_page():
    return redirect(url_for("admin_keys.admin_keys_list"))


@admin_bp.get("/")
@admin_required
def admin_keys_list():
    """The admin keys (of every admin: any admin may revoke one), and a form for one of your own."""
    return render_template("api_keys/admin.html", rows=api_keys.listing(admins=True), scopes=api_keys.ADMIN_SCOPES)


@admin_bp.post("/")
@admin_required
def admin_keys_create():
    """Create an admin key of the signed-in admin and show it once (on the GET this redirects to)."""
    admin = current_user.admin
    try:
        row, key = api_keys.create_admin(admin, request.form.get("scope", ""), request.form.get("name", ""))
    except api_keys.ApiKeyError as exc:
        flash(f"No key was created: {exc}.")
        return _admin_keys_page()
    shown_once.keep("admin-api-key", admin.id, key, key_id=row.id)
    return redirect(url_for("admin_keys.admin_keys_new"))


@admin_bp.get("/new")
@admin_required
def admin_keys_new():
    """Show the admin key just made, this once."""
    kept = shown_once.take("admin-api-key", current_user.admin.id)
    if kept is None:
        flash("An API key is shown once, when it is made. Create a new one (and revoke the lost one).")
        return _admin_keys_page()
    key, facts = kept
    page = render_template(
        "api_keys/admin_secret.html",
        row=ApiKey.get_by_id(facts["key_id"]),
        key=key,
        base_url=current_app.config["PUBLIC_URL"],
    )
    return page, 200, {"Cache-Control": "no-store"}


@admin_bp.post("/<int:key_id>/revoke")
@admin_required
def admin_keys_revoke(key_id: int):
    """Revoke an admin key: the next request with it is refused."""
    row = ApiKey.get_or_none((ApiKey.id == key_id) & ApiKey.account.is_null())
    if row is None:
        abort(404)
    if api_keys.revoke(row):
        flash(f"API key {row.prefix} is revoked: requests with it are refused from now on.")
    return _admin_keys_page()

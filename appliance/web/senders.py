"""Senders: verified addresses (add, resend the link, mark verified, delete) and each SMTP account's
sender authorization (authorized domains and senders, block or alert)."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for

from .. import audit, queue, senders
from ..models import Sender, SmtpAccount
from .permissions import admin_required, viewer_required

bp = Blueprint("senders", __name__, url_prefix="/senders")


def _get(sender_id: int) -> Sender:
    sender = Sender.get_or_none(Sender.id == sender_id)
    if sender is None:
        abort(404)
    return sender


def _list_page(error: str | None = None, address: str = "", status: int = 200):
    rows = Sender.select().order_by(Sender.email)
    return render_template("senders/list.html", rows=rows, error=error, address=address), status


@bp.get("/")
@viewer_required
def senders_list():
    """List sender addresses and whether they are verified."""
    return _list_page()


@bp.post("/")
@admin_required
def senders_create():
    """Add a sender: mail it a verification link, or mark it verified at once."""
    address = request.form.get("address", "")
    vouch = request.form.get("verified") == "on"
    try:
        sender, _ = senders.create(current_app.config, address, verified=vouch)
    except senders.SenderError as exc:
        return _list_page(str(exc), address, 400)
    if vouch:
        flash(f"{sender.email} is verified (by you).")
    else:
        flash(f"A verification link was mailed to {sender.email}; mail from it is accepted once it is opened.")
    return redirect(url_for("senders.senders_list"))


@bp.post("/<int:sender_id>/resend")
@admin_required
def senders_resend(sender_id: int):
    """Mail a new verification link."""
    sender = _get(sender_id)
    if not sender.verified:
        try:
            senders.send_verification(current_app.config, sender)
        except senders.SenderError as exc:
            return _list_page(str(exc), status=400)
        flash(f"A new verification link was mailed to {sender.email}.")
    return redirect(url_for("senders.senders_list"))


@bp.post("/<int:sender_id>/verify")
@admin_required
def senders_verify(sender_id: int):
    """Mark a sender verified without its link (recorded as verified by an admin); its links still
    waiting to go out are cancelled."""
    sender = senders.mark_verified(_get(sender_id), "admin")
    queue.cancel(senders.pending_links(sender), by="sender verified")
    audit.record("sender.verify", f"sender {sender.email}", "verified by the admin")
    flash(f"{sender.email} is verified (by you).")
    return redirect(url_for("senders.senders_list"))


@bp.post("/<int:sender_id>/delete")
@admin_required
def senders_delete(sender_id: int):
    """Delete a sender: mail from it is refused again unless its domain is verified."""
    sender = _get(sender_id)
    senders.delete(sender)
    flash(f"{sender.email} was removed.")
    return redirect(url_for("senders.senders_list"))


@bp.post("/accounts/<int:account_id>")
@admin_required
def senders_authorize(account_id: int):
    """Save an SMTP account's authorized domains and senders and its mode (from its edit page)."""
    account = SmtpAccount.get_or_none(SmtpAccount.id == account_id)
    if account is None:
        abort(404)
    form = request.form
    values = {
        "authorized_domains": form.get("authorized_domains", ""),
        "authorized_senders": form.get("authorized_senders", ""),
        "sender_mode": form.get("sender_mode", senders.BLOCK),
    }
    try:
        checked = senders.authorization(
            values["authorized_domains"], values["authorized_senders"], values["sender_mode"]
        )
    except senders.AuthorizationError as exc:
        hints = {
            "authorized_domains": ". Separate domains with ;",
            "authorized_senders": ". Separate addresses with ;",
            "sender_mode": " (choose block or alert).",
        }
        errors = {k: v + hints[k] for k, v in exc.errors.items()}
        return render_template("senders/authorization.html", account=account, values=values, errors=errors), 400
    senders.authorize(account, checked)
    return redirect(url_for("accounts.accounts_edit", account_id=account.id, saved=1) + "#sender-authorization")

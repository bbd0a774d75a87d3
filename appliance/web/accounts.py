"""SMTP accounts: list, create, edit (IP authorization), reset password, delete, test connection."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from peewee import fn

from .. import accounts, api_keys, clock, tls
from ..models import SCOPES, Message, SmtpAccount
from ..policy import quotas
from . import connection, guides, shown_once
from .permissions import admin_required, admin_writes, viewer_required

bp = Blueprint("accounts", __name__, url_prefix="/accounts")

PRIORITIES = {1: "1 · very high", 2: "2 · high", 3: "3 · normal", 4: "4 · low", 5: "5 · very low"}


def _get(account_id: int) -> SmtpAccount:
    account = SmtpAccount.get_or_none(SmtpAccount.id == account_id)
    if account is None:
        abort(404)
    return account


def _messages_today() -> dict[int, int]:
    midnight = dt.datetime.combine(clock.now().date(), dt.time())
    rows = (
        Message.select(Message.account, fn.COUNT(Message.id).alias("n"))
        .where(Message.received_at >= midnight, Message.account.is_null(False))
        .group_by(Message.account)
        .tuples()
    )
    return dict(rows)


def _no_store(html: str):
    """Send a page that shows a password once: browsers and proxies must not keep a copy."""
    return html, 200, {"Cache-Control": "no-store"}


def _connection_context(account: SmtpAccount, password: str | None = None) -> dict:
    """What the account pages show about connecting; ``password`` on the page that shows it once."""
    settings = current_app.config
    filled = guides.values(settings, account, password)
    return {
        "hostname": settings["HOSTNAME"],
        "ports": connection.submission_ports(settings),
        "account": account,
        "quotas": quotas.usage_rows(account.id, clock.now()),
        "guides": guides.guides(filled),
        "guide_values": filled,
        "ca_path": guides.CA_PATH,
        "api_keys": api_keys.listing(account.id),
        "api_scopes": SCOPES,
    }


@bp.get("/ca.pem")
@viewer_required
def accounts_ca_certificate():
    """The local CA's certificate (public), for clients that must trust the generated certificate."""
    ca = Path(current_app.config["DATA_DIR"]) / "tls" / "ca.pem"
    if tls.publicly_trusted(current_app.config) or not ca.is_file():
        abort(404)
    return send_file(ca, mimetype="application/x-pem-file", as_attachment=True, download_name="appliance-ca.pem")


TRACKING_CHOICES = {"": None, "default": None, "on": True, "off": False}  # form value → account setting


def parse_form(form) -> dict:
    """Read the account form into the arguments of accounts.create and accounts.update."""
    try:
        priority = int(form.get("priority", "3"))
    except ValueError:
        priority = 0  # refused by the service's check, like any other number out of range
    return {
        "name": form.get("name", ""),
        "note": form.get("note", ""),
        "priority": priority,
        "networks": [form.get("ip_rules", "")],
        "ip_only": form.get("ip_only") == "on",
        "stream": form.get("stream", "transactional"),
        # A value that is none of these goes to the service's check, which says what it takes.
        "track_opens": TRACKING_CHOICES.get(form.get("track_opens", ""), form.get("track_opens")),
        "track_clicks": TRACKING_CHOICES.get(form.get("track_clicks", ""), form.get("track_clicks")),
    }


def form_errors(exc: accounts.AccountError) -> dict[str, str]:
    """The service's sentences as the form shows them, next to their fields."""
    errors = {field: f"{text[:1].upper()}{text[1:]}." for field, text in exc.errors.items()}
    if "ip_rules" in errors:
        errors["ip_rules"] += " Write one address or network per line, like 203.0.113.7 or 2001:db8::/32."
    return errors


def _form_values(form) -> dict:
    """What the form shows again after a refusal: the fields as they were typed."""
    values = parse_form(form)
    del values["networks"]
    return values | {"ip_rules": form.get("ip_rules", ""), "active": form.get("active") == "on"}


@bp.get("/")
@viewer_required
def accounts_list():
    """List every SMTP account with its status and recent activity."""
    rows = SmtpAccount.select().order_by(SmtpAccount.priority, SmtpAccount.name)
    return render_template("accounts/list.html", accounts=rows, today=_messages_today(), priorities=PRIORITIES)


@bp.route("/new", methods=["GET", "POST"])
@admin_required
def accounts_create():
    """Create an account and show its password once."""
    if request.method == "GET":
        return render_template(
            "accounts/create.html", values={"priority": 3, "active": True}, errors={}, priorities=PRIORITIES
        )
    try:
        account, password = accounts.create(**parse_form(request.form))
    except accounts.AccountError as exc:
        return render_template(
            "accounts/create.html", values=_form_values(request.form), errors=form_errors(exc), priorities=PRIORITIES
        ), 400
    return _show_once(account, password, created=True)


@bp.route("/<int:account_id>", methods=["GET", "POST"])
@admin_writes
def accounts_edit(account_id: int):
    """Show an account's settings and connection details; save changes on POST."""
    account = _get(account_id)
    if request.method == "GET":
        return render_template(
            "accounts/edit.html",
            values=account.__data__,
            errors={},
            priorities=PRIORITIES,
            **_connection_context(account),
        )
    try:
        accounts.update(account, **parse_form(request.form), active=request.form.get("active") == "on")
    except accounts.AccountError as exc:
        values = _form_values(request.form) | {"id": account.id}
        return render_template(
            "accounts/edit.html",
            values=values,
            errors=form_errors(exc),
            priorities=PRIORITIES,
            **_connection_context(account),
        ), 400
    return redirect(url_for("accounts.accounts_edit", account_id=account.id, saved=1))


@bp.route("/<int:account_id>/reset-password", methods=["GET", "POST"])
@admin_required
def accounts_reset_password(account_id: int):
    """Ask for confirmation, then give the account a new password and show it once."""
    account = _get(account_id)
    if request.method == "GET" or request.form.get("confirm") != "yes":
        return render_template("accounts/reset.html", account=account)
    return _show_once(account, accounts.reset_password(account), created=False)


def _show_once(account: SmtpAccount, password: str, created: bool):
    """Keep the new password for the page the browser is sent to (post-redirect-get)."""
    shown_once.keep("account-password", account.id, password, created=created)
    return redirect(url_for("accounts.accounts_password", account_id=account.id))


@bp.get("/<int:account_id>/password")
@admin_required
def accounts_password(account_id: int):
    """Show the password just made for this account, this once; after that, say how to get a new one."""
    account = _get(account_id)
    kept = shown_once.take("account-password", account.id)
    if kept is None:
        flash("The password was shown once, when it was made. Reset it for a new one.")
        return redirect(url_for("accounts.accounts_edit", account_id=account.id))
    password, facts = kept
    return _no_store(
        render_template(
            "accounts/secret.html",
            password=password,
            created=facts["created"],
            **_connection_context(account, password),
        )
    )


@bp.route("/<int:account_id>/delete", methods=["GET", "POST"])
@admin_required
def accounts_delete(account_id: int):
    """Ask for confirmation, then delete the account (its messages stay in the log)."""
    account = _get(account_id)
    if request.method == "GET" or request.form.get("confirm") != "yes":
        return render_template("accounts/delete.html", account=account)
    accounts.delete(account)
    if request.headers.get("HX-Request"):
        return ""  # the row's outerHTML swap removes it
    return redirect(url_for("accounts.accounts_list"))


@bp.post("/<int:account_id>/test")
@admin_required
def accounts_test(account_id: int):
    """Run connect → EHLO → STARTTLS → AUTH against this appliance and explain each step."""
    account = _get(account_id)
    try:
        port = int(request.form.get("port", ""))
    except ValueError:
        abort(400)
    steps = connection.run(current_app.config, port, account.username, request.form.get("password", ""))
    if request.headers.get("HX-Request"):
        return render_template("accounts/_test_result.html", steps=steps, port=port)
    return render_template(
        "accounts/edit.html",
        values=account.__data__,
        errors={},
        priorities=PRIORITIES,
        steps=steps,
        tested_port=port,
        **_connection_context(account),
    )

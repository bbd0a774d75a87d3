"""SMTP accounts: list, create, edit (IP authorization), reset password, delete, test connection."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from flask import (
    Blueprint,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from peewee import fn

from .. import accounts, audit, clock
from ..models import Message, SmtpAccount
from ..policy import quotas
from . import connection, guides
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
    rows = (Message.select(Message.account, fn.COUNT(Message.id).alias("n"))
            .where(Message.received_at >= midnight, Message.account.is_null(False))
            .group_by(Message.account).tuples())
    return dict(rows)


def _no_store(html: str):
    """Send a page that shows a password once: browsers and proxies must not keep a copy."""
    return html, 200, {"Cache-Control": "no-store"}


def _connection_context(account: SmtpAccount, password: str | None = None) -> dict:
    """What the account pages show about connecting; ``password`` on the page that shows it once."""
    settings = current_app.config
    filled = guides.values(settings, account, password)
    return {"hostname": settings["HOSTNAME"], "ports": connection.submission_ports(settings),
            "account": account, "quotas": quotas.usage_rows(account.id, clock.now()),
            "guides": guides.guides(filled), "guide_values": filled, "ca_path": guides.CA_PATH}


@bp.get("/ca.pem")
@viewer_required
def accounts_ca_certificate():
    """The local CA's certificate (public), for clients that must trust the generated certificate."""
    ca = Path(current_app.config["DATA_DIR"]) / "tls" / "ca.pem"
    if current_app.config["TLS_CERT"] or not ca.is_file():
        abort(404)
    return send_file(ca, mimetype="application/x-pem-file", as_attachment=True, download_name="appliance-ca.pem")


def parse_form(form) -> tuple[dict, dict[str, str]]:
    """Read the account form; return (values, errors by field name)."""
    errors: dict[str, str] = {}
    values = {
        "name": form.get("name", "").strip(),
        "note": form.get("note", "").strip(),
        "active": form.get("active") == "on",
        "ip_only": form.get("ip_only") == "on",
        "ip_rules": form.get("ip_rules", ""),
    }
    if not values["name"]:
        errors["name"] = "Give the account a name, for example the website that uses it."
    try:
        values["priority"] = int(form.get("priority", "3"))
    except ValueError:
        values["priority"] = 0
    if values["priority"] not in PRIORITIES:
        errors["priority"] = "Priority is 1 (very high) to 5 (very low)."
    try:
        networks = accounts.parse_networks([values["ip_rules"]])
    except accounts.AccountError as exc:
        text = str(exc)
        errors["ip_rules"] = (f"{text[:1].upper()}{text[1:]}. Write one address or network per line, "
                              "like 203.0.113.7 or 2001:db8::/32.")
    else:
        values["ip_rules"] = "\n".join(networks)
        if values["ip_only"] and not networks:
            errors["ip_only"] = "IP-only mode needs at least one authorized address or network."
    return values, errors


@bp.get("/")
@viewer_required
def accounts_list():
    """List every SMTP account with its status and recent activity."""
    rows = SmtpAccount.select().order_by(SmtpAccount.priority, SmtpAccount.name)
    return render_template("accounts/list.html", accounts=rows, today=_messages_today(),
                           priorities=PRIORITIES)


@bp.route("/new", methods=["GET", "POST"])
@admin_required
def accounts_create():
    """Create an account and show its password once."""
    if request.method == "GET":
        return render_template("accounts/create.html", values={"priority": 3, "active": True},
                               errors={}, priorities=PRIORITIES)
    values, errors = parse_form(request.form)
    if errors:
        return render_template("accounts/create.html", values=values, errors=errors,
                               priorities=PRIORITIES), 400
    account, password = accounts.create(
        values["name"], networks=values["ip_rules"].split(), ip_only=values["ip_only"],
        priority=values["priority"], note=values["note"])
    audit.record("account.create", f"account {account.username}", f"name {account.name!r}")
    return _no_store(render_template("accounts/secret.html", password=password, created=True,
                                     **_connection_context(account, password)))


@bp.route("/<int:account_id>", methods=["GET", "POST"])
@admin_writes
def accounts_edit(account_id: int):
    """Show an account's settings and connection details; save changes on POST."""
    account = _get(account_id)
    if request.method == "GET":
        return render_template("accounts/edit.html", values=account.__data__, errors={},
                               priorities=PRIORITIES, **_connection_context(account))
    values, errors = parse_form(request.form)
    if errors:
        values["id"] = account.id
        return render_template("accounts/edit.html", values=values, errors=errors,
                               priorities=PRIORITIES, **_connection_context(account)), 400
    active = values.pop("active")
    SmtpAccount.update(**values).where(SmtpAccount.id == account.id).execute()
    if active != account.active:
        accounts.set_active(account.id, active)
    changed = sorted(k for k, v in {**values, "active": active}.items() if account.__data__.get(k) != v)
    audit.record("account.edit", f"account {account.username}", ", ".join(changed) or "nothing changed")
    return redirect(url_for("accounts.accounts_edit", account_id=account.id, saved=1))


@bp.route("/<int:account_id>/reset-password", methods=["GET", "POST"])
@admin_required
def accounts_reset_password(account_id: int):
    """Ask for confirmation, then give the account a new password and show it once."""
    account = _get(account_id)
    if request.method == "GET" or request.form.get("confirm") != "yes":
        return render_template("accounts/reset.html", account=account)
    password = accounts.reset_password(account)
    audit.record("account.reset_password", f"account {account.username}")
    return _no_store(render_template("accounts/secret.html", password=password, created=False,
                                     **_connection_context(account, password)))


@bp.route("/<int:account_id>/delete", methods=["GET", "POST"])
@admin_required
def accounts_delete(account_id: int):
    """Ask for confirmation, then delete the account (its messages stay in the log)."""
    account = _get(account_id)
    if request.method == "GET" or request.form.get("confirm") != "yes":
        return render_template("accounts/delete.html", account=account)
    SmtpAccount.delete_by_id(account.id)
    audit.record("account.delete", f"account {account.username}", f"name {account.name!r}")
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
    return render_template("accounts/edit.html", values=account.__data__, errors={}, priorities=PRIORITIES,
                           steps=steps, tested_port=port, **_connection_context(account))

"""The `appliance` command (DESIGN §4): a Flask CLI group over create_app.

Errors go to stderr with a non-zero exit code; every list/show command accepts --json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from flask.cli import FlaskGroup, with_appcontext
from peewee import JOIN

from . import accounts as accounts_service
from . import admins as admins_service
from . import alerts as alerts_service
from . import backup as backup_service
from . import config, create_app, db
from . import domains as domains_service
from . import senders as senders_service
from . import suppressions as suppressions_service
from .accounts import AccountError
from .models import (
    DELIVERED,
    QUEUED,
    SENDING,
    Alert,
    Attempt,
    Delivery,
    Domain,
    Message,
    Sender,
    SmtpAccount,
    Suppression,
)


def _app_factory():
    return create_app()


def _emit(data: Any, as_json: bool, text: str) -> None:
    click.echo(json.dumps(data, indent=2, default=str) if as_json else text)


def _ts(value) -> str | None:
    return value.isoformat(sep=" ", timespec="seconds") if value else None


@click.group(cls=FlaskGroup, create_app=_app_factory, add_default_commands=False, add_version_option=False)
def cli() -> None:
    """Self-hosted SMTP relay appliance."""


@cli.command()
@click.option("--role", type=click.Choice(["all", "smtp", "web", "worker"]), default="all", show_default=True,
              help="What this process runs: everything, or one part of the scale-out mode.")
@with_appcontext
def serve(role: str) -> None:
    """Run the dashboard, the SMTP listeners and the workers (same as `python app.py`)."""
    from flask import current_app

    from .serve import serve as run

    try:
        run(current_app._get_current_object(), role)
    except backup_service.BackupError as exc:
        raise click.ClickException(str(exc)) from None


@cli.command()
@with_appcontext
def migrate() -> None:
    """Apply pending database migrations (start-up does this too)."""
    applied = db.migrate()
    click.echo("applied: " + ", ".join(applied) if applied else "the schema is up to date")


# -- doctor ------------------------------------------------------------------------------------
def _ip_option(ctx, param, value: str | None) -> str | None:
    if value is None:
        return None
    import ipaddress

    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an IP address") from None


def _domain_option(ctx, param, value: str) -> str:
    domain = value.strip().rstrip(".")
    if "." not in domain or any(c.isspace() or c in "/@:" for c in domain):
        raise click.BadParameter(f"{value!r} is not a domain name")
    return domain


@cli.command()
@click.option("--ip", default=None, metavar="ADDRESS", callback=_ip_option,
              help="Public address mail leaves from, for the PTR and blocklist checks. "
                   "Default: the address this machine uses towards the internet (give it behind NAT).")
@click.option("--probe-domain", default="gmail.com", show_default=True, metavar="DOMAIN", callback=_domain_option,
              help="Domain whose first MX the outbound port 25 check talks to (unused with SMARTHOST).")
@click.option("--timeout", type=click.FloatRange(0.1, 60), default=5.0, show_default=True,
              help="Seconds each connection, SMTP reply and DNS lookup may take.")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def doctor(ip: str | None, probe_domain: str, timeout: float, as_json: bool) -> None:
    """Check ports, certificate, DNS, PTR, outbound port 25 and blocklists; exit 1 when one FAILs."""
    from flask import current_app

    from . import doctor as checks

    results = checks.run(dict(current_app.config), ip=ip, probe_domain=probe_domain, timeout=timeout)
    counts = checks.summary(results)
    lines = [f"{r.status:<4}  {r.check:<11} {r.detail}" + (f" → {r.hint}" if r.hint and r.status != checks.OK else "")
             for r in results]
    lines.append(", ".join(f"{n} {status}" for status, n in counts.items()))
    _emit([r.as_dict() for r in results], as_json, "\n".join(lines))
    if counts[checks.FAIL]:
        raise click.exceptions.Exit(1)


# -- admins ------------------------------------------------------------------------------------
@cli.group()
def admin() -> None:
    """Dashboard administrators."""


@admin.command("create")
@click.argument("email")
@click.option("--role", type=click.Choice(admins_service.ROLES), default="admin")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
              help="Read from a prompt (or standard input) when not given.")
@with_appcontext
def admin_create(email: str, role: str, password: str) -> None:
    """Create a dashboard admin."""
    try:
        user = admins_service.create(email, password, role)
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"created {user.role} {user.email}")


@admin.command("first")
@with_appcontext
def admin_first() -> None:
    """Create the first admin, when there is none, and print its login once (installers run this so
    the password is shown to whoever installs, not left in the service's log)."""
    first = admins_service.ensure_first_admin()
    if first is None:
        click.echo("an admin exists already: nothing created (`appliance admin create` adds another)")
        return
    email, password = first
    click.echo(f"first admin login (shown once): {email} / {password}")


# -- SMTP accounts -----------------------------------------------------------------------------
@cli.group()
def accounts() -> None:
    """SMTP accounts (credentials that apps and devices use to send)."""


def account_dict(a: SmtpAccount) -> dict[str, Any]:
    return {
        "id": a.id, "name": a.name, "username": a.username, "active": a.active, "priority": a.priority,
        "note": a.note, "ip_rules": a.networks, "ip_only": a.ip_only, "created_at": _ts(a.created_at),
        "last_login_at": _ts(a.last_login_at), "last_login_ip": a.last_login_ip,
        "last_failure_at": _ts(a.last_failure_at), "last_failure_ip": a.last_failure_ip,
        "last_failure_reason": a.last_failure_reason,
        "authorized_domains": senders_service.lines(a.authorized_domains),
        "authorized_senders": senders_service.lines(a.authorized_senders),
        "sender_mode": a.sender_mode,
    }


def _get_account(ref: str) -> SmtpAccount:
    account = accounts_service.find(ref)
    if account is None:
        raise click.ClickException(f"no SMTP account {ref!r} (give its id or username)")
    return account


@accounts.command("create")
@click.argument("name")
@click.option("--ip", "networks", multiple=True, metavar="CIDR", help="Only these networks may use it (repeatable).")
@click.option("--ip-only", is_flag=True, help="Authenticate by source network alone (needs --ip).")
@click.option("--priority", type=click.IntRange(1, 5), default=3, show_default=True, help="1 very high … 5 very low.")
@click.option("--note", default="")
@click.option("--authorized-domains", default=None, metavar="LIST",
              help="Domains it may send from, separated by `;` (or `,`/spaces). Empty: any verified sender.")
@click.option("--authorized-senders", default=None, metavar="LIST",
              help="Addresses it may send as, separated by `;` (or `,`/spaces).")
@click.option("--sender-mode", type=click.Choice(senders_service.MODES), default=None,
              help="block: refuse an unauthorized sender (553) and alert; alert: accept and alert. Default block.")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def accounts_create(name: str, networks: tuple[str, ...], ip_only: bool, priority: int, note: str,
                    authorized_domains: str | None, authorized_senders: str | None, sender_mode: str | None,
                    as_json: bool) -> None:
    """Create an SMTP account; its password is printed this once."""
    authorization = _authorization(authorized_domains, authorized_senders, sender_mode)
    try:
        account, password = accounts_service.create(name, networks=networks, ip_only=ip_only, priority=priority, note=note)
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None
    if authorization:
        SmtpAccount.update(**authorization).where(SmtpAccount.id == account.id).execute()
        account = SmtpAccount.get_by_id(account.id)
    data = account_dict(account) | {"password": password}
    _emit(data, as_json, f"username: {account.username}\npassword: {password}\n"
          "(the password is shown only now; `appliance accounts reset-password` makes a new one)")


@accounts.command("list")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def accounts_list(as_json: bool) -> None:
    """List SMTP accounts."""
    rows = [account_dict(a) for a in SmtpAccount.select().order_by(SmtpAccount.id)]
    text = "\n".join(
        f"{r['id']:>4}  {r['username']:<32} {'active' if r['active'] else 'disabled':<8} p{r['priority']}"
        f"  last login {r['last_login_at'] or 'never'}"
        + (f"  last failure {r['last_failure_at']} ({r['last_failure_reason']})" if r["last_failure_at"] else "")
        for r in rows
    ) or "no SMTP accounts yet: appliance accounts create NAME"
    _emit(rows, as_json, text)


@accounts.command("show")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def accounts_show(ref: str, as_json: bool) -> None:
    """Show one SMTP account (by id or username)."""
    data = account_dict(_get_account(ref))
    _emit(data, as_json, "\n".join(f"{k}: {v}" for k, v in data.items()))


def _authorization(domains: str | None, addresses: str | None, mode: str | None) -> dict[str, str]:
    """Parse the sender authorization options that were given into SmtpAccount fields."""
    values = {}
    try:
        if domains is not None:
            values["authorized_domains"] = "\n".join(senders_service.parse_domains(domains))
        if addresses is not None:
            values["authorized_senders"] = "\n".join(senders_service.parse_senders(addresses))
    except senders_service.SenderError as exc:
        raise click.ClickException(str(exc)) from None
    if mode is not None:
        values["sender_mode"] = mode
    return values


@accounts.command("edit")
@click.argument("ref")
@click.option("--authorized-domains", default=None, metavar="LIST",
              help="Domains it may send from, separated by `;` (or `,`/spaces); \"\" clears the list.")
@click.option("--authorized-senders", default=None, metavar="LIST",
              help="Addresses it may send as, separated by `;` (or `,`/spaces); \"\" clears the list.")
@click.option("--sender-mode", type=click.Choice(senders_service.MODES), default=None,
              help="block: refuse an unauthorized sender (553) and alert; alert: accept and alert.")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def accounts_edit(ref: str, authorized_domains: str | None, authorized_senders: str | None,
                  sender_mode: str | None, as_json: bool) -> None:
    """Change an account's sender authorization; prints the normalized lists."""
    account = _get_account(ref)
    values = _authorization(authorized_domains, authorized_senders, sender_mode)
    if not values:
        raise click.ClickException("nothing to change: give --authorized-domains, --authorized-senders or --sender-mode")
    SmtpAccount.update(**values).where(SmtpAccount.id == account.id).execute()
    data = account_dict(SmtpAccount.get_by_id(account.id))
    _emit(data, as_json, f"{data['username']}: authorized domains: {'; '.join(data['authorized_domains']) or '(any verified)'}"
          f"\nauthorized senders: {'; '.join(data['authorized_senders']) or '(any verified)'}"
          f"\nunauthorized senders: {data['sender_mode']}")


@accounts.command("reset-password")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def accounts_reset_password(ref: str, as_json: bool) -> None:
    """Give an account a new password (the old one stops working at once)."""
    account = _get_account(ref)
    password = accounts_service.reset_password(account)
    _emit({"id": account.id, "username": account.username, "password": password}, as_json,
          f"username: {account.username}\npassword: {password}\n(shown only now)")


def _set_active(ref: str, active: bool) -> None:
    account = _get_account(ref)
    SmtpAccount.update(active=active).where(SmtpAccount.id == account.id).execute()
    click.echo(f"{account.username} {'enabled' if active else 'disabled'}")


@accounts.command("disable")
@click.argument("ref")
@with_appcontext
def accounts_disable(ref: str) -> None:
    """Disable an account: its logins are refused from now on."""
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
    account = _get_account(ref)
    if not yes:
        click.confirm(f"Delete {account.username}?", abort=True)
    account.delete_instance()
    click.echo(f"deleted {account.username}")


# -- messages ----------------------------------------------------------------------------------
@cli.group()
def messages() -> None:
    """Accepted messages and their deliveries."""


def message_dict(m: Message, deliveries: list[Delivery]) -> dict[str, Any]:
    return {
        "id": m.id, "status": m.status, "direction": m.direction,
        "account": m.account.username if m.account_id and m.account else None,
        "mail_from": m.mail_from, "from": m.from_header, "subject": m.subject,
        "message_id": m.message_id_header, "size": m.size, "priority": m.priority,
        "received_at": _ts(m.received_at), "client_ip": m.client_ip, "client_helo": m.client_helo, "tls": m.tls,
        "recipients": [
            {"address": d.rcpt, "status": d.status, "attempts": d.attempts,
             "next_attempt_at": _ts(d.next_attempt_at) if d.status in ("queued", "deferred") else None,
             "last_reply": d.last_reply}
            for d in deliveries
        ],
    }


def _with_deliveries(query) -> list[dict[str, Any]]:
    msgs = list(query)
    by_message: dict[str, list[Delivery]] = {m.id: [] for m in msgs}
    if msgs:
        for d in Delivery.select().where(Delivery.message.in_(list(by_message))).order_by(Delivery.id):
            by_message[d.message_id].append(d)
    return [message_dict(m, by_message[m.id]) for m in msgs]


@messages.command("list")
@click.option("--status", type=click.Choice(["queued", "sending", "deferred", "delivered", "bounced", "failed",
                                             "suppressed", "held", "cancelled", "received", "partial"]))
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def messages_list(status: str | None, limit: int, as_json: bool) -> None:
    """List the newest messages."""
    query = Message.select(Message, SmtpAccount).join(SmtpAccount, JOIN.LEFT_OUTER)
    if status:
        query = query.where(Message.status == status)
    rows = _with_deliveries(query.order_by(Message.received_at.desc(), Message.id.desc()).limit(limit))
    text = "\n".join(
        f"{r['id']}  {r['received_at']}  {r['status']:<10} {r['mail_from'] or '<>'} -> "
        f"{', '.join(x['address'] for x in r['recipients']) or '(local)'}  {r['subject']!r}"
        for r in rows
    ) or "no messages"
    _emit(rows, as_json, text)


@messages.command("show")
@click.argument("message_id")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def messages_show(message_id: str, as_json: bool) -> None:
    """Show one message with its recipients."""
    query = Message.select(Message, SmtpAccount).join(SmtpAccount, JOIN.LEFT_OUTER).where(
        Message.id == message_id.strip().upper()
    )
    rows = _with_deliveries(query)
    if not rows:
        raise click.ClickException(f"no message {message_id!r}")
    data, text = _message_report(rows[0])
    _emit(data, as_json, text)


def _message_report(data: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """A message (from _with_deliveries) with its attempts, and as text: recipients and timeline."""
    data["attempts"] = _attempts(data["id"])
    lines = [f"{k}: {v}" for k, v in data.items() if k not in ("recipients", "attempts")]
    lines += [f"  -> {r['address']}: {r['status']} {r['last_reply']}".rstrip() for r in data["recipients"]]
    lines += ["timeline:"] + [
        f"  {a['at']}  {a['recipient']}  {a['outcome']:<9} {a['code'] or ''} {a['enhanced_code']} {a['text']}"
        f"  ({'via ' + a['mx_host'] + ' [' + a['mx_ip'] + ']' if a['mx_host'] else 'no connection'}"
        f", {a['tls'] or 'no TLS'}, {a['duration_ms']} ms)"
        for a in data["attempts"]
    ] if data["attempts"] else []
    return data, "\n".join(lines)


def _attempts(message_id: str) -> list[dict[str, Any]]:
    """Every delivery attempt of a message, oldest first (the timeline)."""
    rows = Attempt.select(Attempt, Delivery).join(Delivery).where(Delivery.message == message_id).order_by(
        Attempt.started_at, Attempt.id
    )
    return [
        {"at": _ts(a.started_at), "recipient": a.delivery.rcpt, "outcome": a.outcome, "code": a.code,
         "enhanced_code": a.enhanced_code, "text": a.text, "mx_host": a.mx_host, "mx_ip": a.mx_ip,
         "tls": a.tls, "duration_ms": a.duration_ms}
        for a in rows
    ]


# -- queue (deliveries waiting to go out) --------------------------------------------------------
@cli.group("queue")
def queue_group() -> None:
    """Deliveries waiting to go out: list, retry now, hold, release, cancel."""


def delivery_dict(d: Delivery) -> dict[str, Any]:
    return {
        "id": d.id, "message": d.message_id, "recipient": d.rcpt, "status": d.status, "priority": d.priority,
        "attempts": d.attempts, "next_attempt_at": _ts(d.next_attempt_at), "last_reply": d.last_reply,
    }


def _deliveries(refs: tuple[str, ...]) -> list[Delivery]:
    """Deliveries named by id, or every delivery of messages named by their ULID."""
    ids = [int(r) for r in refs if r.isdigit()]
    messages = [r.strip().upper() for r in refs if not r.isdigit()]
    rows = list(Delivery.select().where(Delivery.id.in_(ids) | Delivery.message.in_(messages)).order_by(Delivery.id))
    if not rows:
        raise click.ClickException(f"no delivery or message matches {' '.join(refs)}")
    return rows


@queue_group.command("list")
@click.option("--status", type=click.Choice(["queued", "sending", "deferred", "held"]), help="Only this status.")
@click.option("--limit", type=click.IntRange(1, 100000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def queue_list(status: str | None, limit: int, as_json: bool) -> None:
    """List deliveries that are waiting (queued, sending, deferred, held), most urgent first."""
    wanted = [status] if status else ["queued", "sending", "deferred", "held"]
    rows = [delivery_dict(d) for d in Delivery.select().where(Delivery.status.in_(wanted)).order_by(
        Delivery.priority, Delivery.next_attempt_at, Delivery.id).limit(limit)]
    text = "\n".join(
        f"{r['id']:>6}  {r['message']}  {r['status']:<8} p{r['priority']} try {r['attempts']}"
        f"  next {r['next_attempt_at']}  {r['recipient']}  {r['last_reply']}".rstrip()
        for r in rows
    ) or "the queue is empty"
    _emit(rows, as_json, text)


def _queue_action(verb: str, refs: tuple[str, ...], as_json: bool) -> None:
    from flask import current_app

    from . import queue

    rows = _deliveries(refs)
    if verb in ("retry", "release"):
        changed = getattr(queue, verb)(queue.runtime(current_app.config), rows)
    else:
        changed = getattr(queue, verb)(rows)
    data = [delivery_dict(d) for d in changed]
    skipped = len(rows) - len(changed)
    _emit(data, as_json, f"{verb}: {len(changed)} deliver{'y' if len(changed) == 1 else 'ies'}"
          + (f" ({skipped} skipped: not in a state that allows it)" if skipped else ""))


@queue_group.command("retry")
@click.argument("refs", nargs=-1, required=True, metavar="ID...")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def queue_retry(refs: tuple[str, ...], as_json: bool) -> None:
    """Try deferred deliveries now (IDs: delivery ids or message ids)."""
    _queue_action("retry", refs, as_json)


@queue_group.command("hold")
@click.argument("refs", nargs=-1, required=True, metavar="ID...")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def queue_hold(refs: tuple[str, ...], as_json: bool) -> None:
    """Hold waiting deliveries until released."""
    _queue_action("hold", refs, as_json)


@queue_group.command("release")
@click.argument("refs", nargs=-1, required=True, metavar="ID...")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def queue_release(refs: tuple[str, ...], as_json: bool) -> None:
    """Release held deliveries: they go out now."""
    _queue_action("release", refs, as_json)


@queue_group.command("cancel")
@click.argument("refs", nargs=-1, required=True, metavar="ID...")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def queue_cancel(refs: tuple[str, ...], as_json: bool) -> None:
    """Cancel waiting or held deliveries for good (no bounce is sent)."""
    _queue_action("cancel", refs, as_json)


# -- suppressions --------------------------------------------------------------------------------
@cli.group()
def suppressions() -> None:
    """Addresses that are never sent to (hard bounces, or added by hand)."""


def suppression_dict(s: Suppression) -> dict[str, Any]:
    return {"address": s.address, "source": s.source, "reason": s.reason, "created_at": _ts(s.created_at)}


@suppressions.command("list")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def suppressions_list(as_json: bool) -> None:
    """List suppressed addresses, newest first."""
    rows = [suppression_dict(s) for s in Suppression.select().order_by(Suppression.created_at.desc(), Suppression.id.desc())]
    text = "\n".join(f"{r['address']:<40} {r['source']:<7} {r['created_at']}  {r['reason']}" for r in rows)
    _emit(rows, as_json, text or "no suppressed addresses")


@suppressions.command("add")
@click.argument("address")
@click.option("--reason", default="added by an admin", show_default=True)
@with_appcontext
def suppressions_add(address: str, reason: str) -> None:
    """Suppress an address: later messages to it are accepted and recorded, never sent."""
    from . import clock

    try:
        address = suppressions_service.normalize_address(address)
    except suppressions_service.SuppressionError as exc:
        raise click.ClickException(str(exc)) from None
    if Suppression.select().where(Suppression.address == address).exists():
        click.echo(f"{address} was already suppressed")
        return
    Suppression.create(address=address, reason=reason, source="manual", created_at=clock.now())
    click.echo(f"suppressed {address}")


@suppressions.command("remove")
@click.argument("address")
@with_appcontext
def suppressions_remove(address: str) -> None:
    """Stop suppressing an address."""
    if not Suppression.delete().where(Suppression.address == address.strip().lower()).execute():
        raise click.ClickException(f"{address} is not suppressed")
    click.echo(f"{address.strip().lower()} is no longer suppressed")


# -- senders (issue 5) ---------------------------------------------------------------------------
@cli.group("senders")
def senders_group() -> None:
    """Sender addresses: verified by a link mailed to them, or by an admin."""


def sender_dict(s: Sender) -> dict[str, Any]:
    return {"id": s.id, "email": s.email, "verified": s.verified, "verified_by": s.verified_by or None,
            "verified_at": _ts(s.verified_at), "link_sent_at": _ts(s.link_sent_at), "created_at": _ts(s.created_at)}


def _get_sender(ref: str) -> Sender:
    sender = senders_service.find(ref)
    if sender is None:
        raise click.ClickException(f"no sender {ref!r}")
    return sender


@senders_group.command("add")
@click.argument("email")
@click.option("--verified", is_flag=True, help="Mark it verified now (recorded as verified by an admin); no link is mailed.")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def senders_add(email: str, verified: bool, as_json: bool) -> None:
    """Add a sender; without --verified, mail it a verification link through the appliance."""
    from flask import current_app

    existing = senders_service.find(email)
    try:
        if existing is not None and verified:
            sender = senders_service.mark_verified(existing, "admin")
        else:
            sender = senders_service.add(email, verified_by_admin=verified)
    except senders_service.SenderError as exc:
        raise click.ClickException(str(exc)) from None
    text = f"{sender.email}: verified by an admin"
    if not sender.verified:
        message_id = senders_service.send_verification(current_app.config, sender)
        sender = Sender.get_by_id(sender.id)
        text = f"{sender.email}: a verification link was mailed (message {message_id})"
    _emit(sender_dict(sender), as_json, text)


@senders_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def senders_list(as_json: bool) -> None:
    """List senders and whether they are verified."""
    rows = [sender_dict(s) for s in Sender.select().order_by(Sender.email)]
    text = "\n".join(
        f"{r['id']:>4}  {r['email']:<40} "
        + (f"verified by {r['verified_by']} {r['verified_at']}" if r["verified"] else f"waiting (link sent {r['link_sent_at']})")
        for r in rows
    ) or "no senders yet: appliance senders add EMAIL"
    _emit(rows, as_json, text)


@senders_group.command("resend")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def senders_resend(ref: str, as_json: bool) -> None:
    """Mail a new verification link to a sender that is not verified yet."""
    from flask import current_app

    sender = _get_sender(ref)
    if sender.verified:
        raise click.ClickException(f"{sender.email} is already verified")
    message_id = senders_service.send_verification(current_app.config, sender)
    _emit(sender_dict(Sender.get_by_id(sender.id)) | {"message": message_id}, as_json,
          f"{sender.email}: a new verification link was mailed (message {message_id})")


@senders_group.command("delete")
@click.argument("ref")
@with_appcontext
def senders_delete(ref: str) -> None:
    """Delete a sender: mail from it is refused again (unless its domain is verified)."""
    sender = _get_sender(ref)
    sender.delete_instance()
    click.echo(f"deleted {sender.email}")


# -- domains (issue 5) ---------------------------------------------------------------------------
@cli.group("domains")
def domains_group() -> None:
    """Sending domains: DKIM keys, the DNS records to publish, and their checks."""


def domain_dict(d: Domain, hostname: str) -> dict[str, Any]:
    status = d.statuses()
    return {
        "id": d.id, "name": d.name, "verified": d.verified, "selector": d.selector,
        "next_selector": d.next_selector, "created_at": _ts(d.created_at), "last_checked_at": _ts(d.last_checked_at),
        "records": [
            {"key": r.key, "label": r.label, "type": r.type, "name": r.name, "value": r.value,
             "strings": r.strings, "note": r.note,
             "status": status.get(r.key, {}).get("status", "unchecked"), "error": status.get(r.key, {}).get("error", "")}
            for r in domains_service.records(d, hostname)
        ],
    }


def _domain_text(data: dict[str, Any]) -> str:
    lines = [f"{data['name']}: {'verified' if data['verified'] else 'NOT verified'}"
             f" (last checked {data['last_checked_at'] or 'never'})"]
    for r in data["records"]:
        lines.append(f"  [{r['status']}] {r['label']}: {r['type']} {r['name']}")
        shown = " ".join(f'"{part}"' for part in r["strings"]) if r["type"] == "TXT" else r["value"]
        lines.append(f"      {shown}")
        if r["error"]:
            lines.append(f"      -> {r['error']}")
    return "\n".join(lines)


def _get_domain(ref: str) -> Domain:
    domain = domains_service.find(ref)
    if domain is None:
        raise click.ClickException(f"no sending domain {ref!r}: appliance domains add DOMAIN")
    return domain


@domains_group.command("add")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def domains_add(name: str, as_json: bool) -> None:
    """Add a sending domain: generate its DKIM keys and print the DNS records to publish."""
    from flask import current_app

    try:
        domain = domains_service.add(name)
    except domains_service.DomainError as exc:
        raise click.ClickException(str(exc)) from None
    data = domain_dict(domain, current_app.config["HOSTNAME"])
    _emit(data, as_json, _domain_text(data) + f"\npublish these records, then: appliance domains check {domain.name}")


@domains_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def domains_list(as_json: bool) -> None:
    """List sending domains."""
    from flask import current_app

    rows = [domain_dict(d, current_app.config["HOSTNAME"]) for d in Domain.select().order_by(Domain.name)]
    text = "\n".join(
        f"{r['id']:>4}  {r['name']:<32} {'verified' if r['verified'] else 'not verified':<13}"
        f" {sum(x['status'] == 'pass' for x in r['records'])}/{len(r['records'])} records pass"
        for r in rows
    ) or "no sending domains yet: appliance domains add DOMAIN"
    _emit(rows, as_json, text)


@domains_group.command("show")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def domains_show(ref: str, as_json: bool) -> None:
    """Show a domain's DNS records and the last check of each."""
    from flask import current_app

    data = domain_dict(_get_domain(ref), current_app.config["HOSTNAME"])
    _emit(data, as_json, _domain_text(data))


@domains_group.command("check")
@click.argument("refs", nargs=-1, metavar="[DOMAIN]...")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def domains_check(refs: tuple[str, ...], as_json: bool) -> None:
    """Look every record up in DNS now (all domains when none is named) and say what passes.

    Exits 1 when a checked domain is not verified, so scripts and monitoring can act on it.
    """
    from flask import current_app

    settings = current_app.config
    targets = [_get_domain(r) for r in refs] or list(Domain.select().order_by(Domain.name))
    rows = []
    for domain in targets:
        domains_service.check(domain, settings)
        rows.append(domain_dict(Domain.get_by_id(domain.id), settings["HOSTNAME"]))
    _emit(rows, as_json, "\n".join(_domain_text(r) for r in rows) or "no sending domains yet")
    if not all(Domain.get_by_id(d.id).verified for d in targets):
        raise click.exceptions.Exit(1)


@domains_group.command("rotate")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def domains_rotate(ref: str, as_json: bool) -> None:
    """Make new DKIM keys under a new selector; signing switches to them once their record is found."""
    from flask import current_app

    domain = domains_service.rotate(_get_domain(ref))
    data = domain_dict(domain, current_app.config["HOSTNAME"])
    _emit(data, as_json, _domain_text(data) + f"\npublish the new DKIM records, then: appliance domains check {domain.name}")


# -- alerts (issue 5) ----------------------------------------------------------------------------
@cli.group("alerts")
def alerts_group() -> None:
    """The alert center: unauthorized senders, broken DNS records, unverified domains."""


def alert_dict(a: Alert) -> dict[str, Any]:
    return {"id": a.id, "kind": a.kind, "severity": a.severity, "subject": a.subject, "text": a.text,
            "first_seen": _ts(a.first_seen), "last_seen": _ts(a.last_seen), "count": a.count,
            "acknowledged": a.acknowledged, "acknowledged_by": a.acknowledged_by or None}


@alerts_group.command("list")
@click.option("--all", "include_acknowledged", is_flag=True, help="Include acknowledged alerts.")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def alerts_list(include_acknowledged: bool, as_json: bool) -> None:
    """List open alerts, most recent first."""
    rows = [alert_dict(a) for a in alerts_service.listed(include_acknowledged=include_acknowledged)]
    text = "\n".join(
        f"{r['id']:>4}  {r['last_seen']}  {r['severity']:<8} {r['kind']:<28} {r['subject']}  x{r['count']}"
        f"{'  (acknowledged)' if r['acknowledged'] else ''}\n      {r['text']}"
        for r in rows
    ) or "no open alerts"
    _emit(rows, as_json, text)


@alerts_group.command("ack")
@click.argument("ids", nargs=-1, type=int, metavar="ID...")
@click.option("--all", "everything", is_flag=True, help="Acknowledge every open alert.")
@with_appcontext
def alerts_ack(ids: tuple[int, ...], everything: bool) -> None:
    """Acknowledge alerts: their repeats open a new alert (and mail again)."""
    if not ids and not everything:
        raise click.ClickException("give alert ids, or --all")
    count = alerts_service.acknowledge(None if everything else list(ids), "cli")
    if ids and not count:
        raise click.ClickException(f"no open alert among {' '.join(map(str, ids))}")
    click.echo(f"acknowledged {count} alert{'s' if count != 1 else ''}")


# -- sending policy (issue 6): quotas, provider groups, warm-up, reputation --------------------
def _policy_error(exc: Exception) -> click.ClickException:
    return click.ClickException(str(exc))


def _cap(value: str | None) -> int | None | bool:
    """Read a cap option: a number, or "none" to remove the cap (not given: leave it)."""
    if value is None:
        return False
    if value.strip().lower() in ("none", "-", ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise click.ClickException(f"a cap is a whole number or 'none', not {value!r}") from None


def quota_rows(account: SmtpAccount) -> list[dict[str, Any]]:
    from . import clock, limits

    return [{**r, "window_start": _ts(r["window_start"]), "window_end": _ts(r["window_end"])}
            for r in limits.usage_rows(account.id, clock.now())]


@cli.group("quotas")
def quotas_group() -> None:
    """Sending quotas per SMTP account: recipients per minute, hour, day or month."""


@quotas_group.command("set")
@click.argument("ref", metavar="ACCOUNT")
@click.option("--per", "specs", multiple=True, metavar="PERIOD=LIMIT[:ACTION]",
              help="e.g. hour=100:defer, day=1000:hold, month=20000:reject (repeatable; replaces all quotas).")
@click.option("--clear", is_flag=True, help="Remove every quota of the account.")
@with_appcontext
def quotas_set(ref: str, specs: tuple[str, ...], clear: bool) -> None:
    """Set an account's quotas: over one, new mail is deferred (451), held, or rejected (550)."""
    from . import limits
    from . import sending_policy as sp

    account = _get_account(ref)
    if not specs and not clear:
        raise click.ClickException("give --per PERIOD=LIMIT[:ACTION] (repeatable), or --clear")
    try:
        limits.set_quotas(account.id, [] if clear else [sp.parse_quota(s) for s in specs])
    except sp.PolicyError as exc:
        raise _policy_error(exc) from None
    quotas = limits.quotas_of(account.id)
    click.echo(f"{account.username}: " + (", ".join(map(str, quotas)) or "no quotas"))


@quotas_group.command("show")
@click.argument("ref", metavar="ACCOUNT")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def quotas_show(ref: str, as_json: bool) -> None:
    """Show an account's quotas and its usage in each current window."""
    account = _get_account(ref)
    rows = quota_rows(account)
    text = "\n".join(f"{r['period']:<6} {r['used']:>7} / {r['limit']:<7} ({r['percent']:>3} %)  over it: {r['action']}"
                     for r in rows) or f"{account.username}: no quotas"
    _emit({"account": account.username, "quotas": rows}, as_json, text)


def provider_dict(g) -> dict[str, Any]:
    from . import clock

    throttled = g.throttled_until is not None and g.throttled_until > clock.now()
    return {"name": g.name, "domains": g.domain_patterns.split(), "mx_hosts": g.mx_patterns.split(),
            "hourly_cap": g.hourly_cap, "session_cap": g.session_cap, "throttled": throttled,
            "throttled_until": _ts(g.throttled_until) if throttled else None,
            "throttle_reply": g.throttle_reply if throttled else None}


@cli.group("providers")
def providers_group() -> None:
    """Provider groups: destinations paced together (by recipient domain or MX host name)."""


@providers_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def providers_list(as_json: bool) -> None:
    """List provider groups in matching order, with their caps and any slow-down in force."""
    from . import limits

    rows = [provider_dict(g) for g in limits.group_rows()]
    text = "\n".join(
        f"{r['name']:<10} hourly {r['hourly_cap'] if r['hourly_cap'] is not None else '-':>6}  "
        f"sessions {r['session_cap'] if r['session_cap'] is not None else '-':>3}  "
        f"domains {' '.join(r['domains']) or '-'}  mx {' '.join(r['mx_hosts']) or '-'}"
        + (f"\n           slowed down until {r['throttled_until']}: {r['throttle_reply']}" if r["throttled"] else "")
        for r in rows)
    _emit(rows, as_json, text)


@providers_group.command("set")
@click.argument("name")
@click.option("--domains", default=None, metavar="LIST", help="Recipient domain patterns, comma separated (gmail.com,yahoo.*).")
@click.option("--mx", default=None, metavar="LIST", help="MX host name patterns, comma separated (*.google.com).")
@click.option("--hourly", default=None, metavar="N|none", help="Deliveries per hour to the whole group.")
@click.option("--sessions", default=None, metavar="N|none", help="Concurrent sessions to the whole group.")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def providers_set(name: str, domains: str | None, mx: str | None, hourly: str | None, sessions: str | None,
                  as_json: bool) -> None:
    """Create or change a provider group."""
    from . import limits
    from . import sending_policy as sp

    def split(value: str | None) -> list[str] | None:
        return None if value is None else [p for p in value.replace(",", " ").split() if p]

    try:
        row = limits.save_group(name.strip().lower(), domains=split(domains), mx_hosts=split(mx),
                                hourly_cap=_cap(hourly), session_cap=_cap(sessions))
    except sp.PolicyError as exc:
        raise _policy_error(exc) from None
    data = provider_dict(row)
    _emit(data, as_json, f"{data['name']}: hourly {data['hourly_cap']}, sessions {data['session_cap']}")


def warmup_dict() -> dict[str, Any]:
    from . import clock, limits
    from . import sending_policy as sp

    plan = limits.warmup_plan()
    today = clock.now().date()
    steps = sp.parse_plan(plan.steps)
    return {
        "enabled": plan.enabled, "start_date": plan.start_date.isoformat() if plan.start_date else None,
        "plan": sp.format_plan(steps),
        "steps": [{"first_day": s.first_day, "daily_cap": s.daily_cap} for s in steps],
        "day": sp.plan_day(plan.start_date, today) if plan.start_date else None,
        "today_cap": limits.warmup_cap(today),
        "sent_today": limits.sent_since(sp.window("day", clock.now())[0]),
    }


@cli.group("warmup")
def warmup_group() -> None:
    """The IP warm-up: a daily cap on all deliveries that grows with the plan."""


@warmup_group.command("show")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def warmup_show(as_json: bool) -> None:
    """Show the plan, today's day of it, today's cap and what was sent today."""
    data = warmup_dict()
    cap = "no cap" if data["today_cap"] is None else f"cap {data['today_cap']}"
    state = f"day {data['day']}, {cap}, {data['sent_today']} sent today" if data["enabled"] else "off"
    _emit(data, as_json, f"warm-up {state}\nplan (day:cap): {data['plan']}\nstart: {data['start_date'] or '-'}")


@warmup_group.command("set")
@click.option("--enable/--disable", "enabled", default=None, help="Turn the daily cap on or off.")
@click.option("--start", "start", default=None, metavar="YYYY-MM-DD", help="Day 1 of the plan (default: today, when enabling).")
@click.option("--plan", default=None, metavar="DAY:CAP,…", help="Steps like 1:1000,4:5000,21: (an empty cap: no cap).")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def warmup_set(enabled: bool | None, start: str | None, plan: str | None, as_json: bool) -> None:
    """Change the warm-up plan, its start date, or turn it on or off."""
    import datetime as dt

    from . import limits
    from . import sending_policy as sp

    try:
        start_date = dt.date.fromisoformat(start) if start else None
    except ValueError:
        raise click.ClickException(f"--start: expected YYYY-MM-DD, got {start!r}") from None
    try:
        limits.set_warmup(enabled=enabled, start_date=start_date, steps=plan)
    except sp.PolicyError as exc:
        raise _policy_error(exc) from None
    data = warmup_dict()
    _emit(data, as_json, f"warm-up {'on' if data['enabled'] else 'off'}, start {data['start_date'] or '-'}, plan {data['plan']}")


@cli.group("policy")
def policy_group() -> None:
    """The sending policy as a whole."""


@policy_group.command("show")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def policy_show(as_json: bool) -> None:
    """Show provider groups, the warm-up, reputation thresholds and each account's standing."""
    from flask import current_app

    from . import limits
    from .models import AccountReputation

    t = limits.thresholds(current_app.config)
    reputation = [{"account": r.account.username, "state": r.state, "reason": r.reason or None, "sent": r.sent,
                   "bounced": r.bounced, "complaints": r.complaints, "checked_at": _ts(r.checked_at)}
                  for r in AccountReputation.select().join(SmtpAccount)]
    data = {
        "providers": [provider_dict(g) for g in limits.group_rows()],
        "warmup": warmup_dict(),
        "reputation_thresholds": {"warn_bounce": t.warn_bounce, "warn_complaint": t.warn_complaint,
                                  "hold_bounce": t.hold_bounce, "hold_complaint": t.hold_complaint,
                                  "window_hours": t.window_hours, "min_volume": t.min_volume},
        "reputation": reputation,
        "quotas": {a.username: quota_rows(a) for a in SmtpAccount.select().order_by(SmtpAccount.id)
                   if a.quotas.exists()},
    }
    lines = [f"providers: {', '.join(p['name'] + (' (slowed down)' if p['throttled'] else '') for p in data['providers'])}",
             f"warm-up: {'on, day ' + str(data['warmup']['day']) + ', cap ' + str(data['warmup']['today_cap']) if data['warmup']['enabled'] else 'off'}",
             f"reputation: warn at {t.warn_bounce:.1%} bounces / {t.warn_complaint:.2%} complaints, "
             f"hold at {t.hold_bounce:.1%} / {t.hold_complaint:.2%} over {t.window_hours} h (from {t.min_volume} deliveries)"]
    lines += [f"  {r['account']}: {r['state']}" + (f" ({r['reason']})" if r["reason"] else "") for r in reputation]
    lines += [f"quotas of {name}: " + ", ".join(f"{q['period']}={q['limit']}:{q['action']} ({q['used']} used)" for q in rows)
              for name, rows in data["quotas"].items()]
    _emit(data, as_json, "\n".join(lines))

# -- send-test -----------------------------------------------------------------------------------
@cli.command("send-test")
@click.argument("recipient")
@click.option("--wait", "wait_seconds", type=click.FloatRange(0, 3600), default=60, show_default=True,
              help="Seconds to wait for the first outcome (0: queue it and return).")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def send_test(recipient: str, wait_seconds: float, as_json: bool) -> None:
    """Send a test message through the queue, as any mail goes, and show what happened to it.

    Exits 0 when it was delivered, 1 otherwise (bounced, deferred, or still waiting)."""
    import time

    from flask import current_app

    from . import outbox, policy

    settings = current_app.config
    recipient = recipient.strip()
    problem = policy.address_problem(recipient)
    if problem:
        raise click.ClickException(f"{recipient!r} is not an email address: {problem}")
    message_id = outbox.send(
        settings, [recipient], f"Test message from {settings['HOSTNAME']}",
        f"This is a test message sent by `appliance send-test` on {settings['HOSTNAME']}.\n"
        "It went through the same queue, routing, DKIM signing and TLS as your applications' mail.\n",
    )
    query = Message.select(Message, SmtpAccount).join(SmtpAccount, JOIN.LEFT_OUTER).where(Message.id == message_id)
    deadline = time.monotonic() + wait_seconds
    while True:
        data = _with_deliveries(query)[0]
        waiting = [r for r in data["recipients"] if r["status"] in (QUEUED, SENDING)]
        if not waiting or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    data, text = _message_report(data)
    delivered = all(r["status"] == DELIVERED for r in data["recipients"])
    if waiting and not data["attempts"]:
        text += ("\nnot sent yet: is the appliance running? (`systemctl status appliance`); "
                 f"`appliance messages show {message_id}` shows it later")
    _emit(data, as_json, text)
    if not delivered:
        raise click.exceptions.Exit(1)


# -- backup and restore ------------------------------------------------------------------------
@cli.command("backup")
@click.argument("path", required=False, type=click.Path(dir_okay=False, writable=True))
@with_appcontext
def backup_command(path: str | None) -> None:
    """Write a backup of the database, the keys and the TLS files (online; default DATA_DIR/backups)."""
    from flask import current_app

    from . import clock

    now = clock.now()
    target = Path(path) if path else backup_service.default_path(current_app.config["DATA_DIR"], now)
    try:
        manifest = backup_service.create(current_app.config, target, now)
    except backup_service.BackupError as exc:
        raise click.ClickException(str(exc)) from None
    counts = manifest["counts"]
    click.echo(f"backup written: {target} ({backup_service.size_text(target)}; {counts.get('message', 0)} messages, "
               f"{counts.get('smtp_account', 0)} SMTP accounts, {counts.get('domain', 0)} domains)")


@cli.command("restore")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Replace a database that already holds data.")
@with_appcontext
def restore_command(path: str, force: bool) -> None:
    """Restore a backup into DATA_DIR, with the appliance stopped; what it replaces is kept aside."""
    from flask import current_app

    from . import clock

    try:
        restored = backup_service.restore(current_app.config, Path(path), clock.now(), force=force)
    except backup_service.BackupError as exc:
        raise click.ClickException(str(exc)) from None
    manifest = restored.manifest
    click.echo(f"restored the backup of {manifest['created_at']} ({manifest['hostname']}): "
               f"{manifest['counts'].get('message', 0)} messages, {manifest['counts'].get('smtp_account', 0)} SMTP accounts")
    if restored.moved_aside:
        click.echo(f"what it replaced is in {restored.moved_aside}")
    click.echo("start the appliance: mail that was queued is delivered, nothing already delivered is sent again")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `appliance` console script."""
    try:
        code = cli.main(args=argv, prog_name="appliance", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 1
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except (config.ConfigError, ValueError) as exc:
        click.echo(f"Error: {exc}", err=True)
        return 2
    return code if isinstance(code, int) else 0  # a command's click.exceptions.Exit(code)


if __name__ == "__main__":
    sys.exit(main())

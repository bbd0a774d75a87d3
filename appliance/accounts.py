"""SMTP accounts: create, change, enable or disable, delete (the dashboard and the CLI both call these);
credentials: hash, verify, reset; IP authorization."""

from __future__ import annotations

import ipaddress
import re
import secrets
import string
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher

from . import audit, clock, credentials, db
from .db import database
from .models import SmtpAccount
from .policy import acceptance

hasher = PasswordHasher()  # dashboard passwords (appliance/admins.py); SMTP ones: credentials.py
_ALPHABET = string.ascii_letters + string.digits

# Reasons recorded on the account as last_failure_reason (and shown to the admin).
WRONG_PASSWORD = "wrong password"
IP_NOT_AUTHORIZED = "IP not authorized"
ACCOUNT_DISABLED = "account disabled"
UNKNOWN_USER = "unknown user"
# Why a session signed in earlier is refused at MAIL FROM (session_refusal).
SESSION_DELETED = "account deleted"
SESSION_DISABLED = "account disabled"
SESSION_CREDENTIALS_CHANGED = "password reset or account disabled since sign-in"


KEEP: Any = object()  # ``update``: leave this setting as it is


class AccountError(ValueError):
    """Input for an account that cannot be used (shown to the admin as is); ``errors`` holds a
    sentence per input it is about (``name``, ``priority``, ``ip_rules``, ``ip_only``), for forms."""

    def __init__(self, message: str, errors: dict[str, str] | None = None):
        super().__init__(message)
        self.errors = errors or {}


def slugify(name: str) -> str:
    """Turn an account name into the lowercase dash-separated slug used in its username."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug[:40] or "account"


def generate_password(length: int = 24) -> str:
    """Return a random password of letters and digits (safe to paste into any config file)."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def parse_networks(items: Iterable[str]) -> list[str]:
    """Validate CIDRs or single addresses (IPv4/IPv6); return them normalised, or raise AccountError."""
    networks = []
    for item in items:
        for part in re.split(r"[\s,;]+", item.strip()):
            if not part:
                continue
            try:
                networks.append(str(ipaddress.ip_network(part, strict=False)))
            except ValueError:
                raise AccountError(f"not an IP address or network: {part!r}") from None
    return list(dict.fromkeys(networks))


def ip_allowed(account: SmtpAccount, ip: str) -> bool:
    """Tell whether ``ip`` may use ``account`` (an account without networks allows every IP)."""
    networks = account.networks
    if not networks:
        return True
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if addr.version == 6 and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    return any(addr in ipaddress.ip_network(n) for n in networks)


def checked(
    *,
    name: str,
    networks: Iterable[str],
    ip_only: bool,
    priority: int,
    stream: str = "transactional",
    track_opens: bool | None = None,
    track_clicks: bool | None = None,
) -> dict:
    """Check an account's settings (the one validation of the dashboard and the CLI); return them as
    SmtpAccount fields, or raise AccountError with a sentence per bad input. Tracking None: the
    stream's default (on for broadcast, off for transactional)."""
    errors: dict[str, str] = {}
    if stream not in acceptance.STREAMS:
        errors["stream"] = "the stream is transactional (orders, password resets) or broadcast (newsletters)"
    for key, value in (("track_opens", track_opens), ("track_clicks", track_clicks)):
        if value not in (None, True, False):
            errors[key] = "tracking is on, off, or the stream's default"
    name = name.strip()
    if not name:
        errors["name"] = "the account needs a name, for example the website that uses it"
    if priority not in range(1, 6):
        errors["priority"] = "priority is 1 (very high) to 5 (very low)"
    try:
        nets = parse_networks(networks)
    except AccountError as exc:
        errors["ip_rules"] = str(exc)
    else:
        if ip_only and not nets:
            errors["ip_only"] = "an IP-only account needs at least one authorized address or network"
    if errors:
        raise AccountError("; ".join(errors.values()), errors)
    return {
        "name": name,
        "ip_rules": "\n".join(nets),
        "ip_only": ip_only,
        "priority": priority,
        "stream": stream,
        "track_opens": track_opens,
        "track_clicks": track_clicks,
    }


def create(
    name: str,
    *,
    networks: Iterable[str] = (),
    ip_only: bool = False,
    priority: int = 3,
    note: str = "",
    stream: str = "transactional",
    track_opens: bool | None = None,
    track_clicks: bool | None = None,
) -> tuple[SmtpAccount, str]:
    """Create an account; return it and its password (the only time the password exists in clear)."""
    values = checked(
        name=name,
        networks=networks,
        ip_only=ip_only,
        priority=priority,
        stream=stream,
        track_opens=track_opens,
        track_clicks=track_clicks,
    )
    password = generate_password()
    with database.atomic():
        account = SmtpAccount.create(password_hash=credentials.hash_secret(password), note=note.strip(), **values)
        account.username = f"{account.id}.{slugify(values['name'])}.smtp"
        account.save()
    audit.record("account.create", f"account {account.username}", f"name {account.name!r}")
    return account, password


def update(
    account: SmtpAccount,
    *,
    name: str | None = None,
    note: str | None = None,
    priority: int | None = None,
    networks: Iterable[str] | None = None,
    ip_only: bool | None = None,
    active: bool | None = None,
    stream: str | None = None,
    track_opens: Any = KEEP,
    track_clicks: Any = KEEP,
) -> list[str]:
    """Change the settings given (None: keep; for tracking, None is the stream's default and KEEP
    keeps), checked as at creation; return the names of those that changed. A disable ends the
    sessions signed in to the account, as ``set_active`` does."""
    values = checked(
        name=account.name if name is None else name,
        networks=account.networks if networks is None else networks,
        ip_only=account.ip_only if ip_only is None else ip_only,
        priority=account.priority if priority is None else priority,
        stream=account.stream if stream is None else stream,
        track_opens=account.track_opens if track_opens is KEEP else track_opens,
        track_clicks=account.track_clicks if track_clicks is KEEP else track_clicks,
    )
    values["note"] = account.note if note is None else note.strip()
    values["active"] = account.active if active is None else active
    changed = sorted(k for k, v in values.items() if account.__data__.get(k) != v)
    if changed:
        fields: dict = {getattr(SmtpAccount, k): v for k, v in values.items()}
        if not values["active"] and account.active:
            fields[SmtpAccount.credential_version] = SmtpAccount.credential_version + 1
        SmtpAccount.update(fields).where(SmtpAccount.id == account.id).execute()
    audit.record("account.edit", f"account {account.username}", ", ".join(changed) or "nothing changed")
    return changed


def delete(account: SmtpAccount) -> None:
    """Delete an account (its messages stay in the log, and its open sessions end at their next MAIL FROM)."""
    SmtpAccount.delete_by_id(account.id)
    audit.record("account.delete", f"account {account.username}", f"name {account.name!r}")


def reset_password(account: SmtpAccount) -> str:
    """Give the account a new password; the old one stops working at once, and so do the sessions
    signed in with it (at their next MAIL FROM)."""
    password = generate_password()
    SmtpAccount.update(
        password_hash=credentials.hash_secret(password),
        credential_version=SmtpAccount.credential_version + 1,
    ).where(SmtpAccount.id == account.id).execute()
    audit.record("account.reset_password", f"account {account.username}")
    return password


def set_active(account: SmtpAccount, active: bool) -> None:
    """Enable or disable an account; a disable also ends the sessions signed in to it (at their
    next MAIL FROM), so that enabling it again does not revive them."""
    changes: dict = {SmtpAccount.active: active}
    if not active:
        changes[SmtpAccount.credential_version] = SmtpAccount.credential_version + 1
    SmtpAccount.update(changes).where(SmtpAccount.id == account.id).execute()
    audit.record(f"account.{'enable' if active else 'disable'}", f"account {account.username}")


def session_refusal(account_id: int, version: int) -> str | None:
    """Why a session that signed in to the account at credential ``version`` may no longer send
    (one of the SESSION_ reasons), or None while it may. One primary-key read."""
    row = (
        SmtpAccount.select(SmtpAccount.active, SmtpAccount.credential_version)
        .where(SmtpAccount.id == account_id)
        .tuples()
        .first()
    )
    if row is None:
        return SESSION_DELETED
    if not row[0]:
        return SESSION_DISABLED
    return None if row[1] == version else SESSION_CREDENTIALS_CHANGED


def find(ref: str) -> SmtpAccount | None:
    """Find an account by id or username."""
    query = SmtpAccount.select()
    if ref.isdigit():
        return query.where(SmtpAccount.id == int(ref)).first()
    return query.where(SmtpAccount.username == ref).first()


@dataclass
class AuthResult:
    account: SmtpAccount | None
    failure: str | None  # one of the reason constants, None on success


def verify(username: str, password: str, ip: str) -> AuthResult:
    """Check credentials and IP authorization (blocking: a database read, and argon2 for a hash
    stored before credentials.py, which is then replaced); record a failure on the account (a
    success is recorded by record_login)."""
    account = SmtpAccount.select().where(SmtpAccount.username == username).first()
    password_ok, upgraded = credentials.check(account.password_hash if account else credentials.DUMMY, password)
    if account is None:
        return AuthResult(None, UNKNOWN_USER)
    if upgraded:  # unless a reset replaced the hash meanwhile
        SmtpAccount.update(password_hash=upgraded).where(
            (SmtpAccount.id == account.id) & (SmtpAccount.password_hash == account.password_hash)
        ).execute()
    if not password_ok:
        failure = WRONG_PASSWORD
    elif not account.active:
        failure = ACCOUNT_DISABLED
    elif not ip_allowed(account, ip):
        failure = IP_NOT_AUTHORIZED
    else:
        failure = None
    if failure:
        record_failure(account.id, ip, failure)
    return AuthResult(account, failure)


def record_login(account_id: int, ip: str):
    """Note a successful login on the account; return the future of that write.

    The write is a job of the process's writer thread (db.write_many), so it shares the commit
    (and the fsync) of whatever else is written at that moment: as its own transaction on a
    worker thread it cost one fsync per AUTH and held that thread meanwhile, the largest share of
    a session's time on the user's path (one connection per message)."""
    return db.write_many(_record_logins, (account_id, ip, clock.now()))


def _record_logins(logins: list[tuple[int, str, object]]) -> list[None]:
    latest = {account_id: (ip, at) for account_id, ip, at in logins}
    for account_id, (ip, at) in latest.items():
        SmtpAccount.update(last_login_at=at, last_login_ip=ip).where(SmtpAccount.id == account_id).execute()
    return [None] * len(logins)


def record_failure(account_id: int, ip: str, reason: str) -> None:
    """Remember the last failed login of an account, with its reason."""
    SmtpAccount.update(last_failure_at=clock.now(), last_failure_ip=ip, last_failure_reason=reason).where(
        SmtpAccount.id == account_id
    ).execute()


def ip_only_account_for(ip: str) -> SmtpAccount | None:
    """Return the active IP-only account whose networks contain ``ip`` (highest priority first)."""
    candidates = (
        SmtpAccount.select()
        .where(SmtpAccount.ip_only, SmtpAccount.active)
        .order_by(SmtpAccount.priority, SmtpAccount.id)
    )
    for account in candidates:
        if ip_allowed(account, ip):
            return account
    return None

"""SMTP credentials: create, hash, verify, reset; IP authorization."""

from __future__ import annotations

import ipaddress
import re
import secrets
import string
from collections.abc import Iterable
from dataclasses import dataclass

from argon2 import PasswordHasher

from . import clock, credentials, db
from .db import database
from .models import SmtpAccount

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


class AccountError(ValueError):
    """Input for an account that cannot be used (shown to the admin as is)."""


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


def create(
    name: str,
    *,
    networks: Iterable[str] = (),
    ip_only: bool = False,
    priority: int = 3,
    note: str = "",
) -> tuple[SmtpAccount, str]:
    """Create an account; return it and its password (the only time the password exists in clear)."""
    name = name.strip()
    if not name:
        raise AccountError("the account needs a name")
    nets = parse_networks(networks)
    if ip_only and not nets:
        raise AccountError("an IP-only account needs at least one network (--ip)")
    if priority not in range(1, 6):
        raise AccountError("priority must be 1 (very high) to 5 (very low)")
    password = generate_password()
    with database.atomic():
        account = SmtpAccount.create(
            name=name,
            password_hash=credentials.hash_secret(password),
            ip_rules="\n".join(nets),
            ip_only=ip_only,
            priority=priority,
            note=note,
        )
        account.username = f"{account.id}.{slugify(name)}.smtp"
        account.save()
    return account, password


def reset_password(account: SmtpAccount) -> str:
    """Give the account a new password; the old one stops working at once, and so do the sessions
    signed in with it (at their next MAIL FROM)."""
    password = generate_password()
    SmtpAccount.update(
        password_hash=credentials.hash_secret(password),
        credential_version=SmtpAccount.credential_version + 1,
    ).where(SmtpAccount.id == account.id).execute()
    return password


def set_active(account_id: int, active: bool) -> None:
    """Enable or disable an account; a disable also ends the sessions signed in to it (at their
    next MAIL FROM), so that enabling it again does not revive them."""
    changes: dict = {SmtpAccount.active: active}
    if not active:
        changes[SmtpAccount.credential_version] = SmtpAccount.credential_version + 1
    SmtpAccount.update(changes).where(SmtpAccount.id == account_id).execute()


def session_refusal(account_id: int, version: int) -> str | None:
    """Why a session that signed in to the account at credential ``version`` may no longer send
    (one of the SESSION_ reasons), or None while it may. One primary-key read."""
    row = SmtpAccount.select(SmtpAccount.active, SmtpAccount.credential_version).where(
        SmtpAccount.id == account_id
    ).tuples().first()
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
    candidates = SmtpAccount.select().where(SmtpAccount.ip_only, SmtpAccount.active).order_by(
        SmtpAccount.priority, SmtpAccount.id
    )
    for account in candidates:
        if ip_allowed(account, ip):
            return account
    return None

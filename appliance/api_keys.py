"""API keys (docs/api.md): an SMTP account's keys, which act for that account alone, and admin keys,
owned by a dashboard admin, which act for the whole appliance; create (the key is shown once), list,
revoke, and the check of a key that the HTTP API makes on every request; the answers kept for
Idempotency-Key.

A key reads ``ak_<prefix>_<secret>``: the prefix (12 random letters and digits) finds the row, the
secret (32 random bytes) is checked against its hash. The secret is generated, never chosen, so it
is stored as SMTP passwords are (credentials.hash_secret: a salted SHA-256, checked in
microseconds, see credentials.py for why not argon2). The dashboard and the CLI both call these.
"""

from __future__ import annotations

import datetime as dt
import secrets
import string
from dataclasses import dataclass

from peewee import JOIN

from . import audit, clock, credentials
from .models import MANAGE, READ, SCOPES, SEND, AdminUser, ApiKey, IdempotentAnswer, SmtpAccount

KEY_PREFIX = "ak"
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits
_PREFIX_LENGTH = 12
IDEMPOTENCY_WINDOW = dt.timedelta(hours=24)
# What each scope lets a key do: a manage key may also send and read. An admin key sends as no
# account, so it has no send scope and its manage scope does not send.
GRANTS = {SEND: frozenset({SEND}), READ: frozenset({READ}), MANAGE: frozenset({SEND, READ, MANAGE})}
ADMIN_SCOPES = (READ, MANAGE)
ADMIN_GRANTS = {READ: frozenset({READ}), MANAGE: frozenset({READ, MANAGE})}
ADMIN_ROLE = "admin"  # the dashboard role (admins.py) an admin key's owner must keep


class ApiKeyError(ValueError):
    """Input for a key that cannot be used (shown to the admin as is)."""


@dataclass
class Checked:
    """A key that authenticated: its row (with its account or its admin loaded)."""

    key: ApiKey

    @property
    def account(self) -> SmtpAccount | None:
        """The account the key acts for; None for an admin key, which acts for every account."""
        return self.key.account if self.key.account_id is not None else None

    @property
    def is_admin(self) -> bool:
        return self.key.account_id is None

    def allows(self, scope: str) -> bool:
        return scope in (ADMIN_GRANTS if self.is_admin else GRANTS)[self.key.scope]


def owner(key: ApiKey) -> str:
    """Whose key it is, in words: ``account 3.shop.smtp`` or ``admin ann@example.com``."""
    return f"account {key.account.username}" if key.account_id is not None else f"admin {key.admin.email}"


def _new_prefix() -> str:
    return "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(_PREFIX_LENGTH))


def _create(owner_field: dict, scope: str, name: str, scopes: tuple[str, ...]) -> tuple[ApiKey, str]:
    if scope not in scopes:
        raise ApiKeyError(f"the scope is one of {', '.join(scopes)}, not {scope!r}")
    name = name.strip()
    if len(name) > 100:
        raise ApiKeyError("the key's name is at most 100 characters")
    secret = secrets.token_urlsafe(32)
    row = ApiKey.create(
        prefix=_new_prefix(), secret_hash=credentials.hash_secret(secret), scope=scope, name=name, **owner_field
    )
    row = _keys().where(ApiKey.id == row.id).get()
    audit.record("api_key.create", owner(row), f"key {row.prefix} scope {scope}")
    return row, f"{KEY_PREFIX}_{row.prefix}_{secret}"


def create(account: SmtpAccount, scope: str, name: str = "") -> tuple[ApiKey, str]:
    """Give ``account`` a key with ``scope``; return it and the key (the only time it exists in clear)."""
    return _create({"account": account.id}, scope, name, SCOPES)


def create_admin(admin: AdminUser, scope: str = MANAGE, name: str = "") -> tuple[ApiKey, str]:
    """Give a dashboard admin an admin key (scope read or manage) that acts for the whole appliance;
    return it and the key (shown once). Only an active admin (not a viewer) may have one."""
    if admin.role != ADMIN_ROLE or not admin.active:
        raise ApiKeyError(f"{admin.email} is not an active admin: only admins may have an admin key")
    return _create({"admin": admin.id}, scope, name, ADMIN_SCOPES)


def _keys():
    """Keys with their account or admin loaded."""
    return (
        ApiKey.select(ApiKey, SmtpAccount, AdminUser)
        .join(SmtpAccount, JOIN.LEFT_OUTER)
        .switch(ApiKey)
        .join(AdminUser, JOIN.LEFT_OUTER)
    )


def listing(account_id: int | None = None, *, admins: bool = False) -> list[ApiKey]:
    """The keys, of one account, or the admin keys (``admins``), or all; newest first."""
    query = _keys().order_by(ApiKey.created_at.desc(), ApiKey.id.desc())
    if account_id is not None:
        query = query.where(ApiKey.account == account_id)
    elif admins:
        query = query.where(ApiKey.account.is_null())
    return list(query)


def find(ref: str) -> ApiKey | None:
    """A key by its id or its prefix."""
    ref = ref.strip()
    if ref.isdigit():
        return _keys().where(ApiKey.id == int(ref)).first()
    return _keys().where(ApiKey.prefix == ref).first()


def revoke(key: ApiKey) -> bool:
    """Revoke a key: the next request with it is refused. Return False when it was revoked already."""
    changed = ApiKey.update(revoked_at=clock.now()).where((ApiKey.id == key.id) & ApiKey.revoked_at.is_null()).execute()
    if changed:
        audit.record("api_key.revoke", owner(key), f"key {key.prefix}")
    return bool(changed)


def check(presented: str) -> Checked | None:
    """The key that ``presented`` is, if it is one that is not revoked (one indexed read), and for an
    admin key, if its owner is still an active admin; else None. Whether an account's key may send
    (active, IP rules) is the caller's to ask, as at SMTP AUTH."""
    head, _, rest = presented.strip().partition("_")
    prefix, _, secret = rest.partition("_")
    if head != KEY_PREFIX or len(prefix) != _PREFIX_LENGTH or not secret:
        return None
    row = _keys().where((ApiKey.prefix == prefix) & ApiKey.revoked_at.is_null()).first()
    matches, _ = credentials.check(row.secret_hash if row else credentials.DUMMY, secret)
    if row is None or not matches:
        return None
    if row.account_id is None and (row.admin.role != ADMIN_ROLE or not row.admin.active):
        return None
    return Checked(row)


def record_use(key_id: int) -> None:
    """Note when a key was last used (at most once a minute per key, so requests rarely write)."""
    now = clock.now()
    ApiKey.update(last_used_at=now).where(
        (ApiKey.id == key_id) & (ApiKey.last_used_at.is_null() | (ApiKey.last_used_at < now - dt.timedelta(minutes=1)))
    ).execute()


def answered(key_id: int, idempotency_key: str) -> IdempotentAnswer | None:
    """The answer kept for this key's ``idempotency_key`` within the last day, if any."""
    return (
        IdempotentAnswer.select()
        .where(
            (IdempotentAnswer.api_key == key_id)
            & (IdempotentAnswer.key == idempotency_key)
            & (IdempotentAnswer.created_at > clock.now() - IDEMPOTENCY_WINDOW)
        )
        .first()
    )


def keep_answer(key_id: int, idempotency_key: str, request_hash: str, message_id: str) -> None:
    """Keep the answer to a request with an Idempotency-Key (inside the transaction that stores its
    message), and forget this key's answers older than a day."""
    now = clock.now()
    IdempotentAnswer.delete().where(
        (IdempotentAnswer.api_key == key_id)
        & ((IdempotentAnswer.created_at <= now - IDEMPOTENCY_WINDOW) | (IdempotentAnswer.key == idempotency_key))
    ).execute()
    IdempotentAnswer.create(
        api_key=key_id, key=idempotency_key, request_hash=request_hash, message_id=message_id, created_at=now
    )

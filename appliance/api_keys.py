"""API keys of the SMTP accounts (docs/api.md): create (the key is shown once), list, revoke, and the
check of a key that the HTTP API makes on every request; the answers kept for Idempotency-Key.

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

from . import audit, clock, credentials
from .models import MANAGE, READ, SCOPES, SEND, ApiKey, IdempotentAnswer, SmtpAccount

KEY_PREFIX = "ak"
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits
_PREFIX_LENGTH = 12
IDEMPOTENCY_WINDOW = dt.timedelta(hours=24)
# What each scope lets a key do: a manage key may also send and read.
GRANTS = {SEND: frozenset({SEND}), READ: frozenset({READ}), MANAGE: frozenset({SEND, READ, MANAGE})}


class ApiKeyError(ValueError):
    """Input for a key that cannot be used (shown to the admin as is)."""


@dataclass
class Checked:
    """A key that authenticated: its row (with the account loaded)."""

    key: ApiKey

    @property
    def account(self) -> SmtpAccount:
        return self.key.account

    def allows(self, scope: str) -> bool:
        return scope in GRANTS[self.key.scope]


def _new_prefix() -> str:
    return "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(_PREFIX_LENGTH))


def create(account: SmtpAccount, scope: str, name: str = "") -> tuple[ApiKey, str]:
    """Give ``account`` a key with ``scope``; return it and the key (the only time it exists in clear)."""
    if scope not in SCOPES:
        raise ApiKeyError(f"the scope is one of {', '.join(SCOPES)}, not {scope!r}")
    name = name.strip()
    if len(name) > 100:
        raise ApiKeyError("the key's name is at most 100 characters")
    secret = secrets.token_urlsafe(32)
    row = ApiKey.create(
        account=account.id, prefix=_new_prefix(), secret_hash=credentials.hash_secret(secret), scope=scope, name=name
    )
    audit.record("api_key.create", f"account {account.username}", f"key {row.prefix} scope {scope}")
    return row, f"{KEY_PREFIX}_{row.prefix}_{secret}"


def listing(account_id: int | None = None) -> list[ApiKey]:
    """The keys (each with its account loaded), of one account or of all; newest first."""
    query = ApiKey.select(ApiKey, SmtpAccount).join(SmtpAccount).order_by(ApiKey.created_at.desc(), ApiKey.id.desc())
    if account_id is not None:
        query = query.where(ApiKey.account == account_id)
    return list(query)


def find(ref: str) -> ApiKey | None:
    """A key by its id or its prefix."""
    ref = ref.strip()
    query = ApiKey.select(ApiKey, SmtpAccount).join(SmtpAccount)
    if ref.isdigit():
        return query.where(ApiKey.id == int(ref)).first()
    return query.where(ApiKey.prefix == ref).first()


def revoke(key: ApiKey) -> bool:
    """Revoke a key: the next request with it is refused. Return False when it was revoked already."""
    changed = ApiKey.update(revoked_at=clock.now()).where((ApiKey.id == key.id) & ApiKey.revoked_at.is_null()).execute()
    if changed:
        audit.record("api_key.revoke", f"account {key.account.username}", f"key {key.prefix}")
    return bool(changed)


def check(presented: str) -> Checked | None:
    """The key that ``presented`` is, if it is one that is not revoked (one indexed read); else None.
    Whether its account may send (active, IP rules) is the caller's to ask, as at SMTP AUTH."""
    head, _, rest = presented.strip().partition("_")
    prefix, _, secret = rest.partition("_")
    if head != KEY_PREFIX or len(prefix) != _PREFIX_LENGTH or not secret:
        return None
    row = (
        ApiKey.select(ApiKey, SmtpAccount)
        .join(SmtpAccount)
        .where((ApiKey.prefix == prefix) & ApiKey.revoked_at.is_null())
        .first()
    )
    matches, _ = credentials.check(row.secret_hash if row else credentials.DUMMY, secret)
    if row is None or not matches:
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

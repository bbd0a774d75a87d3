"""Dashboard administrators: created from the CLI, or once on first start."""

from __future__ import annotations

from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app

from . import clock
from .accounts import AccountError, generate_password, hasher
from .models import AdminUser

ROLES = ("admin", "viewer")
# Verified against for an unknown e-mail, so both paths cost one argon2 verification.
_DUMMY_HASH = hasher.hash(generate_password())


def create(email: str, password: str, role: str = "admin") -> AdminUser:
    """Create a dashboard admin with an argon2-hashed password."""
    email = email.strip().lower()
    if "@" not in email:
        raise AccountError(f"not an e-mail address: {email!r}")
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}")
    if len(password) < 10:
        raise AccountError("the password needs at least 10 characters")
    if AdminUser.select().where(AdminUser.email == email).exists():
        raise AccountError(f"an admin {email} exists already")
    return AdminUser.create(email=email, password_hash=hasher.hash(password), role=role)


def verify(email: str, password: str) -> AdminUser | None:
    """Return the admin whose e-mail and password match, or None (one argon2 check either way)."""
    admin = AdminUser.get_or_none(AdminUser.email == email.strip().lower())
    try:
        hasher.verify(admin.password_hash if admin else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if admin is None:
        return None
    AdminUser.update(last_login_at=clock.now()).where(AdminUser.id == admin.id).execute()
    return admin


def change_password(admin: AdminUser, current: str, new: str) -> None:
    """Replace the admin's password after checking the current one; raise AccountError if refused."""
    try:
        hasher.verify(admin.password_hash, current)
    except (VerificationError, InvalidHashError):
        raise AccountError("the current password is not right") from None
    if len(new) < 10:
        raise AccountError("the password needs at least 10 characters")
    admin.password_hash = hasher.hash(new)
    AdminUser.update(password_hash=admin.password_hash).where(AdminUser.id == admin.id).execute()


def ensure_first_admin() -> tuple[str, str] | None:
    """On a first start with no admin, create one and return (email, password) to print once."""
    if AdminUser.select().exists():
        return None
    email = f"admin@{current_app.config['HOSTNAME']}".lower()
    password = generate_password(20)
    create(email, password)
    return email, password

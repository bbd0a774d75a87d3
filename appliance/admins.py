"""Dashboard administrators: created from the CLI, or once on first start."""

from __future__ import annotations

from flask import current_app

from .accounts import AccountError, generate_password, hasher
from .models import AdminUser

ROLES = ("admin", "viewer")


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


def ensure_first_admin() -> tuple[str, str] | None:
    """On a first start with no admin, create one and return (email, password) to print once."""
    if AdminUser.select().exists():
        return None
    email = f"admin@{current_app.config['HOSTNAME']}".lower()
    password = generate_password(20)
    create(email, password)
    return email, password

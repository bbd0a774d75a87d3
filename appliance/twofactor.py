"""Second factor for dashboard users: TOTP (RFC 6238, pyotp), one-time recovery codes, the rule that
every user must have one."""

from __future__ import annotations

import hashlib
import secrets
import time

import pyotp

from . import clock
from .db import atomic_write
from .models import AdminUser, DashboardSetting, RecoveryCode

ISSUER = "Mail relay"
RECOVERY_CODES = 10
_REQUIRED_KEY = "two_factor_required"
# 16 characters of a 32-letter alphabet (80 random bits), shown as 4 groups of 4.
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, email: str, hostname: str) -> str:
    """The otpauth:// URI an authenticator app reads from the QR code."""
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=f"{ISSUER} {hostname}")


def _step_matching(secret: str, code: str, now: float | None = None) -> int | None:
    """Return the time step whose code is ``code`` (this one, or one either side for clock drift)."""
    code = "".join(code.split())
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    step = int((time.time() if now is None else now) // totp.interval)
    for candidate in (step, step - 1, step + 1):
        if secrets.compare_digest(totp.generate_otp(candidate), code):
            return candidate
    return None


def code_fits(secret: str, code: str) -> bool:
    """Tell whether ``code`` is a current code of ``secret`` (the enrolment check)."""
    return _step_matching(secret, code) is not None


def enable(admin: AdminUser, secret: str, code: str) -> list[str] | None:
    """Turn TOTP on with ``secret`` once ``code`` proves the app has it; return new recovery codes."""
    step = _step_matching(secret, code)
    if step is None:
        return None
    with atomic_write():
        AdminUser.update(totp_secret=secret, totp_last_step=step).where(AdminUser.id == admin.id).execute()
        codes = _replace_recovery_codes(admin)
    admin.totp_secret, admin.totp_last_step = secret, step
    return codes


def disable(admin: AdminUser) -> None:
    """Turn the second factor off and forget the recovery codes."""
    with atomic_write():
        AdminUser.update(totp_secret="", totp_last_step=0).where(AdminUser.id == admin.id).execute()
        RecoveryCode.delete().where(RecoveryCode.admin == admin.id).execute()
    admin.totp_secret = ""


def check(admin: AdminUser, code: str) -> str | None:
    """Accept a TOTP code (each one once) or an unused recovery code; return "totp", "recovery" or None."""
    step = _step_matching(admin.totp_secret, code) if admin.totp_secret else None
    if step is not None:
        # The step moves forward only: a code seen once (or an older one) never works again.
        taken = (
            AdminUser.update(totp_last_step=step)
            .where((AdminUser.id == admin.id) & (AdminUser.totp_last_step < step))
            .execute()
        )
        return "totp" if taken else None
    digest = _digest(code)
    used = (
        RecoveryCode.update(used_at=clock.now())
        .where((RecoveryCode.admin == admin.id) & (RecoveryCode.code_hash == digest) & RecoveryCode.used_at.is_null())
        .execute()
    )
    return "recovery" if used else None


def new_recovery_codes(admin: AdminUser) -> list[str]:
    """Replace the user's recovery codes with new ones; return them (shown once, stored hashed)."""
    with atomic_write():
        return _replace_recovery_codes(admin)


def recovery_codes_left(admin: AdminUser) -> int:
    return RecoveryCode.select().where((RecoveryCode.admin == admin.id) & RecoveryCode.used_at.is_null()).count()


def _replace_recovery_codes(admin: AdminUser) -> list[str]:
    codes = [
        "-".join("".join(secrets.choice(_ALPHABET) for _ in range(4)) for _ in range(4)) for _ in range(RECOVERY_CODES)
    ]
    RecoveryCode.delete().where(RecoveryCode.admin == admin.id).execute()
    RecoveryCode.insert_many([{"admin": admin.id, "code_hash": _digest(c)} for c in codes]).execute()
    return codes


def _digest(code: str) -> str:
    # Typed codes may come in capitals, with spaces or without the dashes.
    normal = "".join(ch for ch in code.lower() if ch.isalnum())
    return hashlib.sha256(normal.encode()).hexdigest()


def required() -> bool:
    """Tell whether an admin requires every dashboard user to sign in with a second factor."""
    row = DashboardSetting.get_or_none(DashboardSetting.key == _REQUIRED_KEY)
    return row is not None and row.value == "yes"


def set_required(on: bool) -> None:
    with atomic_write():
        DashboardSetting.delete().where(DashboardSetting.key == _REQUIRED_KEY).execute()
        DashboardSetting.create(key=_REQUIRED_KEY, value="yes" if on else "no")

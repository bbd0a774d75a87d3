"""Stored form of the generated SMTP passwords: a salted SHA-256, checked in microseconds.

An SMTP password is generated (24 letters and digits, about 143 bits of randomness), never chosen
by a person: nobody can guess it or find it in a word list, so a slow hash (argon2id, ~150 ms and
64 MiB per check) protects nothing more, while every AUTH paid for it in CPU and memory, and so
could an attacker's. What is stored is ``sha256$<salt>$<digest>``: a 16-byte random salt per
secret and SHA-256 over salt and password, compared in constant time. The digest is one-way, so the
database does not give the password back; the salt keeps equal passwords from having equal rows.

Hashes stored before this scheme are argon2id: they are still checked (with argon2, so that AUTH
costs what it did) and replaced by the new form on their next successful check. Dashboard
passwords are chosen by people and stay argon2id (appliance/admins.py).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

SCHEME = "sha256"
SALT_BYTES = 16
_legacy = PasswordHasher()


def hash_secret(password: str) -> str:
    """Return the stored form of a generated secret (never contains the secret itself)."""
    salt = secrets.token_bytes(SALT_BYTES)
    return f"{SCHEME}${salt.hex()}${_digest(salt, password)}"


def _digest(salt: bytes, password: str) -> str:
    return hashlib.sha256(salt + password.encode()).hexdigest()


# Checked against when the username is unknown, so that path costs what a known one does.
DUMMY = hash_secret(secrets.token_urlsafe(18))


def check(stored: str, password: str) -> tuple[bool, str | None]:
    """Tell whether ``password`` matches ``stored``; on a match of an older (argon2id) hash, also
    return the new stored form to save in its place (None when nothing is to be replaced)."""
    scheme, _, rest = stored.partition("$")
    if scheme == SCHEME:
        salt_hex, _, digest = rest.partition("$")
        try:
            salt = bytes.fromhex(salt_hex)
        except ValueError:
            return False, None
        return hmac.compare_digest(_digest(salt, password), digest), None
    try:
        _legacy.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False, None
    return True, hash_secret(password)

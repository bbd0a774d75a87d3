"""Secrets shown once, by the GET that the POST which made them redirects to (post-redirect-get: a
reload or the back button repeats nothing and shows nothing again).

The POST keeps the secret in the server-side session, encrypted with a key derived from SECRET_KEY so
that the session's database row never holds it in clear, for at most SHOWN_ONCE_SECONDS; the page
that shows it takes it out. Used for an SMTP account's new password, a user's recovery codes and a
webhook's signing secret."""

from __future__ import annotations

import base64
import hashlib
import json

from cryptography.fernet import Fernet, InvalidToken
from flask import current_app, session

SHOWN_ONCE_SECONDS = 600
_KEY = "shown_once"


def _fernet() -> Fernet:
    key = hashlib.sha256(b"appliance shown-once secret\0" + current_app.secret_key.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def keep(kind: str, subject: int, secret: object, **facts) -> None:
    """Keep ``secret`` (anything JSON can hold) for the next page about ``subject``; ``facts`` are
    shown with it (kept in clear: never put a secret there)."""
    token = _fernet().encrypt(json.dumps(secret).encode()).decode()
    session[_KEY] = {"kind": kind, "subject": subject, "secret": token, "facts": facts}


def take(kind: str, subject: int) -> tuple[object, dict] | None:
    """The secret kept for this page, and its facts, once; None after that, when it is too old, or
    when what was kept is about something else."""
    kept = session.pop(_KEY, None) or {}
    if kept.get("kind") != kind or kept.get("subject") != subject:
        return None
    try:
        secret = json.loads(_fernet().decrypt(kept["secret"].encode(), ttl=SHOWN_ONCE_SECONDS))
    except (InvalidToken, KeyError, ValueError):
        return None
    return secret, kept.get("facts", {})

"""The return path (VERP) of mail whose domain's bounce MX points at the appliance; appliance/bounces.py
says what arrives there and what is done with it."""

from __future__ import annotations

import hashlib
import hmac
import re

BOUNCE_LABEL = "bounces"  # bounces.<domain>: its MX (a record on the domain page) points at the appliance
_LOCAL = re.compile(r"bounce\+([0-9a-z]{26})-([0-9a-f]{16})")


def _signature(settings: dict, message_id: str) -> str:
    key = settings["SECRET_KEY"].encode()
    return hmac.new(key, b"return-path:" + message_id.upper().encode(), hashlib.sha256).hexdigest()[:16]


def return_path(settings: dict, message_id: str, domain: str) -> str:
    """The envelope sender for a message signed for ``domain`` whose bounce MX points here."""
    return f"bounce+{message_id.lower()}-{_signature(settings, message_id)}@{BOUNCE_LABEL}.{domain}"


def message_for(settings: dict, address: str) -> str | None:
    """The id of the message whose return path ``address`` is, or None (not one of ours)."""
    local, _, domain = address.rpartition("@")
    if not domain.lower().startswith(BOUNCE_LABEL + "."):
        return None
    match = _LOCAL.fullmatch(local.lower())
    if match is None or not hmac.compare_digest(match.group(2), _signature(settings, match.group(1))):
        return None
    return match.group(1).upper()

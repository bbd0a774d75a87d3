"""Step 2, sign: DKIM signatures with the key of the From: domain (d= aligned, DMARC), RSA then Ed25519.

Runs on delivery workers, over exactly the bytes that are sent; never on the SMTP loop (dkimpy's
pure-Python RSA costs ~10 ms a message).
"""

from __future__ import annotations

import email.utils
import logging

import dkim as dkimpy

from .. import dkim, intake, policy
from ..models import Domain

log = logging.getLogger(__name__)


def signing_domain(data: bytes) -> Domain | None:
    """Return the verified domain of the message's From: address (or its closest verified parent)."""
    try:
        fields, _ = intake.parse_header_block(data)
    except intake.MalformedMessage:
        return None
    from_value = next((value for name, value in fields if name.lower() == "from"), "")
    addresses = [a for _, a in email.utils.getaddresses([from_value]) if "@" in a]
    if not addresses:
        return None
    return Domain.verified_for(policy.split_address(addresses[0])[1])


def sign(data: bytes) -> bytes:
    """Return ``data`` with DKIM-Signature fields prepended when its From: domain is verified.

    The Ed25519 signature is added once its key record has been found in DNS; a message whose
    signing fails is sent unsigned rather than held (receivers treat it like any unsigned mail).
    """
    domain = signing_domain(data)
    if domain is None:
        return data
    ed25519_published = domain.statuses().get("dkim-ed25519", {}).get("status") == "pass"
    try:
        fields = dkim.sign(data, domain.name, domain.selector, domain.rsa_key,
                           domain.ed25519_key if ed25519_published else None)
    except dkimpy.DKIMException as exc:
        log.error("DKIM signing for %s failed, sending unsigned: %s", domain.name, exc)
        return data
    return fields + data

"""Step 4, sign: DKIM signatures with the key of the From: domain (d= aligned, DMARC), RSA then Ed25519.

Runs on delivery workers, over exactly the bytes that are sent; never on the SMTP loop (both
signatures cost ~0.5 ms a message with OpenSSL, appliance/dkim.py).
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import dkim as dkimpy

from .. import db, dkim, message_bytes, returnpath
from ..models import Domain
from ..policy import acceptance

log = logging.getLogger(__name__)


class SigningKey(NamedTuple):
    domain: str
    selector: str
    rsa_key: str
    ed25519_key: str | None  # None until its DNS record has been found
    bounces_here: bool  # its bounce MX points at the appliance: mail leaves with our return path


def signing_key(data: bytes) -> SigningKey | None:
    """Return the key of the verified domain of the message's From: address (or its closest
    verified parent), or None when the message is not to be signed."""
    try:
        fields, _ = message_bytes.parse_header_block(data)
    except message_bytes.MalformedMessage:
        return None
    from_value = next((value for name, value in fields if name.lower() == "from"), "")
    addresses = [a for a in acceptance.header_addresses(from_value) if "@" in a]
    if not addresses:
        return None
    candidates = Domain.names_covering(acceptance.split_address(addresses[0])[1])
    if not candidates:
        return None
    # Read once per message on the delivery path: plain SQL, no model building.
    p = db.database.param
    cursor = db.database.execute_sql(
        f'SELECT "name", "selector", "rsa_key", "ed25519_key", "record_status" FROM "domain" '
        f'WHERE "verified" = {p} AND "name" IN ({db.marks(len(candidates))})',
        (True, *candidates),
    )
    rows = {row[0]: row for row in cursor.fetchall()}
    name = next((c for c in candidates if c in rows), None)
    if name is None:
        return None
    _, selector, rsa_key, ed25519_key, record_status = rows[name]
    statuses = Domain.parse_statuses(record_status)
    published = statuses.get("dkim-ed25519", {}).get("status") == "pass"
    bounces_here = statuses.get("bounce-mx", {}).get("status") == "pass"
    return SigningKey(name, selector, rsa_key, ed25519_key if published else None, bounces_here)


def outgoing(settings: dict, message_id: str, mail_from: str, data: bytes) -> tuple[str, bytes]:
    """Step 4, sign: the envelope sender and the bytes to send: DKIM-signed when the From: domain is verified,
    and with the return path on its bounce subdomain (appliance/bounces.py) once that domain's
    bounce MX points here. The null sender stays null, and so does every sender with a SMARTHOST:
    the upstream relay may accept only senders it knows, and handles the bounces it gets itself."""
    key = signing_key(data)
    if key is None:
        return mail_from, data
    if mail_from and key.bounces_here and not settings["SMARTHOST"]:
        mail_from = returnpath.return_path(settings, message_id, key.domain)
    return mail_from, _signed(data, key)


def _signed(data: bytes, key: SigningKey) -> bytes:
    """The Ed25519 signature is added once its key record has been found in DNS; a message whose
    signing fails is sent unsigned rather than held (receivers treat it like any unsigned mail)."""
    try:
        fields = dkim.sign(data, key.domain, key.selector, key.rsa_key, key.ed25519_key)
    except dkimpy.DKIMException as exc:
        log.error("DKIM signing for %s failed, sending unsigned: %s", key.domain, exc)
        return data
    return fields + data

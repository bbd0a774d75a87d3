"""Who mail goes to and comes from: suppressions, verified senders and domains."""

from __future__ import annotations

import json

from peewee import (
    AutoField,
    BooleanField,
    CharField,
    DateTimeField,
    TextField,
)

from .. import clock
from ..db import database, marks
from .base import BaseModel


class Suppression(BaseModel):
    """An address not to send to: for every stream (stream and domain ""), or only for one stream of
    mail from one sending domain (an unsubscribe: stream "broadcast", the From: domain)."""

    id = AutoField()
    address = CharField()  # lower-cased
    reason = TextField(default="")
    source = CharField(default="manual")  # manual | bounce | complaint | unsubscribe
    created_at = DateTimeField(default=clock.now)
    stream = CharField(default="")  # "" every stream, else the one it is suppressed for
    domain = CharField(default="")  # "" every sending domain, else the From: domain it applies to

    class Meta:
        indexes = ((("address", "stream", "domain"), True),)

    @classmethod
    def every_stream(cls, address: str):
        """The condition that selects ``address``'s suppression of every stream."""
        return (cls.address == address) & (cls.stream == "") & (cls.domain == "")

    @classmethod
    def reasons_for(cls, addresses: list[str]) -> dict[str, list[tuple[str, str, str]]]:
        """Map each suppressed address (lower-cased) among ``addresses`` to its suppressions:
        (stream, domain, reason) each; ``applying`` tells which one stops a given message."""
        wanted = list({a.lower() for a in addresses})
        if not wanted:
            return {}
        # Plain SQL: intake asks this for every commit, on the writer thread.
        cursor = database.execute_sql(
            f'SELECT "address", "stream", "domain", "reason" FROM "suppression" '
            f'WHERE "address" IN ({marks(len(wanted))})',
            wanted,
        )
        found: dict[str, list[tuple[str, str, str]]] = {}
        for address, stream, domain, reason in cursor.fetchall():
            found.setdefault(address, []).append((stream, domain, reason))
        return found

    @staticmethod
    def applying(found: list[tuple[str, str, str]] | None, stream: str, domain: str) -> str | None:
        """The reason of the first of an address's suppressions that stops a message of ``stream``
        from ``domain`` (one of every stream always does), or None."""
        for scope, scope_domain, reason in found or ():
            if not scope or (scope == stream and scope_domain == domain):
                return reason
        return None


class Sender(BaseModel):
    """An address that may appear as sender once verified (by its link, or by an admin)."""

    id = AutoField()
    email = CharField(unique=True)  # lower-cased
    created_at = DateTimeField(default=clock.now)
    verified_at = DateTimeField(null=True)
    verified_by = CharField(default="")  # "link" | "admin"
    link_sent_at = DateTimeField(null=True)

    @property
    def verified(self) -> bool:
        return self.verified_at is not None


class Domain(BaseModel):
    """A sending domain with its DKIM keys and the last DNS check of each record."""

    id = AutoField()
    name = CharField(unique=True)  # lower-cased, no trailing dot
    selector = CharField()
    rsa_key = TextField()  # PEM (PKCS#8) private key, RSA-2048
    ed25519_key = TextField()  # base64 of the 32-byte Ed25519 seed (dkimpy's format)
    # A rotation's new keys wait here until their DKIM record is published (then they replace the above).
    next_selector = CharField(null=True)
    next_rsa_key = TextField(default="")
    next_ed25519_key = TextField(default="")
    verified = BooleanField(default=False)
    record_status = TextField(default="{}")  # JSON: record key → {"status", "error"}
    created_at = DateTimeField(default=clock.now)
    last_checked_at = DateTimeField(null=True)

    def statuses(self) -> dict[str, dict[str, str]]:
        """Return the last DNS check's result per record key: {"status", "error"}."""
        return self.parse_statuses(self.record_status)

    @staticmethod
    def parse_statuses(record_status: str | None) -> dict[str, dict[str, str]]:
        """Read a stored ``record_status`` (for callers that select the column without a model)."""
        return json.loads(record_status or "{}")

    @staticmethod
    def names_covering(address_domain: str) -> list[str]:
        """Return the domain names that could cover ``address_domain``: itself, then its parents."""
        labels = address_domain.lower().rstrip(".").split(".")
        return [".".join(labels[i:]) for i in range(len(labels) - 1)]

    @classmethod
    def verified_for(cls, address_domain: str) -> Domain | None:
        """Return the verified domain that ``address_domain`` is, or is a subdomain of (closest first)."""
        candidates = cls.names_covering(address_domain)
        if not candidates:
            return None
        rows = {d.name: d for d in cls.select().where(cls.name.in_(candidates) & cls.verified)}
        return next((rows[c] for c in candidates if c in rows), None)

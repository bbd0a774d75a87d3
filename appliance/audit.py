"""The audit log: who changed what, written through ``record`` by the dashboard and the CLI."""

from __future__ import annotations

import contextvars
from typing import NamedTuple

from .models import AuditEntry

PAGE_SIZE = 50


class Actor(NamedTuple):
    name: str  # a dashboard user's e-mail, "cli" or "system"
    ip: str = ""


# Set by the edge that takes the request: the dashboard per request, the CLI once per command.
_actor: contextvars.ContextVar[Actor | None] = contextvars.ContextVar("audit_actor", default=None)
SYSTEM = Actor("system")  # what the appliance does by itself (sweeps, workers)


def act_as(name: str, ip: str = "") -> contextvars.Token:
    """Make ``name`` (from ``ip``) the actor of what is recorded in this context; return a reset token."""
    return _actor.set(Actor(name, ip))


def reset(token: contextvars.Token) -> None:
    _actor.reset(token)


def record(action: str, subject: str, detail: str = "", actor: str | None = None) -> AuditEntry:
    """Write one audit entry: ``action`` (noun.verb) done to ``subject`` by the current actor."""
    who = _actor.get() or SYSTEM
    return AuditEntry.create(actor=actor or who.name, ip=who.ip, action=action, subject=subject[:255], detail=detail)


def page(before: int | None = None, size: int = PAGE_SIZE) -> tuple[list[AuditEntry], int | None]:
    """Return the newest entries older than id ``before``, and the id to ask for the next page (or None)."""
    query = AuditEntry.select().order_by(AuditEntry.id.desc()).limit(size + 1)
    if before is not None:
        query = query.where(AuditEntry.id < before)
    rows = list(query)
    more = len(rows) > size
    rows = rows[:size]
    return rows, (rows[-1].id if more else None)

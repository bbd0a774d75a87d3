"""Suppressed addresses: the one validation that the CLI and the dashboard use before adding one."""

from __future__ import annotations

from . import policy


class SuppressionError(ValueError):
    """An address that cannot be suppressed (the text says why)."""


def normalize_address(address: str) -> str:
    """Lower-case and check an address to suppress (``Name <address>`` as pasted from a mail client
    is read as the address); raise SuppressionError when it is not one."""
    address = address.strip().lower()
    if address.endswith(">") and "<" in address:
        address = address[address.rindex("<") + 1 : -1].strip()
    problem = policy.mailbox_problem(address)
    if problem:
        raise SuppressionError(f"{address!r} is not an email address: {problem}")
    return address

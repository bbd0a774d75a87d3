"""The one clock: naive UTC datetimes, replaceable by tests that simulate hours and days."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable

_now: Callable[[], _dt.datetime] | None = None


def now() -> _dt.datetime:
    """Return the current time as a naive UTC datetime (what the database stores)."""
    if _now is not None:
        return _now()
    return _dt.datetime.now(_dt.UTC).replace(tzinfo=None)


def set_clock(fn: Callable[[], _dt.datetime] | None) -> None:
    """Replace the clock (None restores the real one)."""
    global _now
    _now = fn

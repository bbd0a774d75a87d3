"""The one session-cap counter: concurrent outbound sessions per key, in this process.

The queue counts sessions per destination domain (SESSIONS_PER_DESTINATION), the pace step per
provider group (the group's session cap); both use this counter.
"""

from __future__ import annotations

import threading
from collections import Counter


class SessionCounter:
    """Sessions open per key (a destination domain, a provider group), each key under its cap."""

    def __init__(self):
        self._lock = threading.Lock()
        self._busy: Counter = Counter()

    def acquire(self, key: str, cap: int | None) -> bool:
        """Count one more session for ``key`` unless ``cap`` (None: no cap) are open already."""
        with self._lock:
            if cap is not None and self._busy[key] >= cap:
                return False
            self._busy[key] += 1
            return True

    def release(self, key: str) -> None:
        with self._lock:
            self._busy[key] -= 1
            if self._busy[key] <= 0:
                del self._busy[key]

    def busy(self, key: str) -> int:
        with self._lock:
            return self._busy[key]

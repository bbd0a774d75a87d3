"""What every SMTP connection shares: the context (settings, intake, executors), the AUTH throttle,
and the null-sender marker."""

from __future__ import annotations

import concurrent.futures
import ipaddress
import time
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from .. import intake

NULL_SENDER = "<>"  # marker: aiosmtpd would refuse MAIL FROM:<> as a syntax error
# Entries a throttle keeps before it forgets the stale ones (memory stays bounded under a spray).
_THROTTLE_ENTRIES = 10000


def client_key(ip: str) -> str:
    """The client that per-client limits count: its IPv4 address, or the /64 of an IPv6 one (what
    one host usually gets), an IPv4-mapped IPv6 address read as IPv4."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if address.version == 6:
        if address.ipv4_mapped:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return ip


class AuthThrottle:
    """Failed AUTH attempts over a sliding window, per (client, username) and per client; loop
    thread only, so no lock.

    It throttles the guesser, not the victim (OWASP Authentication Cheat Sheet and "Slow Down
    Online Guessing Attacks with Device Cookies"): a username that failed ``per_username`` times
    from a client is refused from that client only, and a client that failed ``per_ip`` times over
    all usernames is refused only for usernames that have not logged in from it before. So an app
    with a wrong password cools down itself, not the other apps behind the same address, and not
    its own account elsewhere.
    """

    def __init__(self, per_username: int, per_ip: int, window: float, cooldown: float):
        self.per_username, self.per_ip = per_username, per_ip
        self.window, self.cooldown = window, cooldown
        self._failures: dict[tuple[str, ...], deque] = {}  # (client, username) and (client,)
        self._cool_until: dict[tuple[str, ...], float] = {}
        self._trusted: OrderedDict[tuple[str, str], None] = OrderedDict()  # logged in from there

    def _cooling(self, key: tuple[str, ...], now: float) -> bool:
        until = self._cool_until.get(key)
        if until is None:
            return False
        if now >= until:
            del self._cool_until[key]
            return False
        return True

    def refuses(self, ip: str, username: str, now: float | None = None) -> bool:
        """Tell whether AUTH as ``username`` from ``ip`` is refused without looking at the password."""
        now = time.monotonic() if now is None else now
        client = client_key(ip)
        if self._cooling((client, username), now):
            return True
        return self._cooling((client,), now) and (client, username) not in self._trusted

    def failed(self, ip: str, username: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        client = client_key(ip)
        for key, budget in (((client, username), self.per_username), ((client,), self.per_ip)):
            recent = self._failures.setdefault(key, deque())
            recent.append(now)
            while recent and recent[0] < now - self.window:
                recent.popleft()
            if len(recent) >= budget:
                self._cool_until[key] = now + self.cooldown
                recent.clear()
        if len(self._failures) > _THROTTLE_ENTRIES:
            self._failures = {k: v for k, v in self._failures.items() if v and v[-1] >= now - self.window}
        if len(self._cool_until) > _THROTTLE_ENTRIES:
            self._cool_until = {k: v for k, v in self._cool_until.items() if v > now}

    def succeeded(self, ip: str, username: str) -> None:
        """Remember that ``username`` logged in from ``ip``: a cool-down of that client spares it."""
        key = (client_key(ip), username)
        self._trusted[key] = None
        self._trusted.move_to_end(key)
        if len(self._trusted) > _THROTTLE_ENTRIES:
            self._trusted.popitem(last=False)


@dataclass
class ServerContext:
    """What every SMTP connection shares: settings, intake, throttles and executors."""

    settings: dict[str, Any]
    committer: intake.GroupCommitter
    throttle: AuthThrottle
    executor: concurrent.futures.Executor
    local_domains: frozenset[str]
    active: int = 0
    per_client: Counter = field(default_factory=Counter)  # open connections by client_key

    @classmethod
    def build(cls, settings: dict[str, Any], committer: intake.GroupCommitter) -> ServerContext:
        domains = {settings["HOSTNAME"].lower()}
        domains.update(d.strip().lower() for d in settings["LOCAL_DOMAINS"].split(",") if d.strip())
        return cls(
            settings=settings,
            committer=committer,
            throttle=AuthThrottle(
                settings["AUTH_FAILURES_PER_USERNAME"],
                settings["AUTH_FAILURES_PER_IP"],
                settings["AUTH_FAILURE_WINDOW"],
                settings["AUTH_COOLDOWN"],
            ),
            executor=concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="smtp-work"),
            local_domains=frozenset(domains),
        )

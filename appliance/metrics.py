"""Prometheus metrics (prometheus-client): outcomes counted from committed events, SMTP sessions and
AUTH failures counted by the SMTP server, the queue read from the database at each scrape.

Counters live in the process that counts them and start at 0 when it starts (Prometheus' ``rate``
and ``increase`` take the reset in their stride); in the scale-out mode every process has its own
(docs/metrics.md). Who may read them: ``allowed``.
"""

from __future__ import annotations

import datetime as dt
import hmac
import ipaddress
import json
import time
from collections.abc import Iterable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from . import clock, events, stats
from .models import DEFERRED, QUEUED, Message, ProviderGroup, sent_facts
from .policy import groups
from .policy import sending as sp

OUTCOMES = (events.DELIVERED, events.DEFERRED, events.BOUNCED, events.FAILED)
# From acceptance to the remote's 250: seconds for most mail, hours for what waited in the queue.
LATENCY_BUCKETS = (0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)
GROUPS_MAX_AGE = 60.0  # seconds a read of the provider groups is used for


class Metrics:
    """One process's metrics in a registry of their own."""

    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.accepted = Counter(
            "appliance_messages_accepted",
            "Messages stored for delivery (a 250 to the client, or the appliance's own notices and DSNs), by stream.",
            ["stream"],
            registry=r,
        )
        self.deliveries = Counter(
            "appliance_deliveries",
            "Outcomes of delivery attempts, one per recipient and "
            "attempt: delivered, deferred, bounced, failed; by stream and provider group.",
            ["outcome", "stream", "provider"],
            registry=r,
        )
        self.latency = Histogram(
            "appliance_delivery_latency_seconds",
            "From acceptance to the remote's 2xx, per delivered recipient.",
            ["stream"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.sessions = Counter(
            "appliance_smtp_sessions",
            "SMTP connections accepted, by kind of listener (submission or mx).",
            ["listener"],
            registry=r,
        )
        self.sessions_open = Gauge("appliance_smtp_sessions_open", "SMTP connections open now.", registry=r)
        self.auth_failures = Counter(
            "appliance_smtp_auth_failures", "Failed SMTP AUTH attempts, by reason.", ["reason"], registry=r
        )
        r.register(_QueueCollector())
        self._groups: tuple[float, list[sp.Group]] = (0.0, [])

    def count(self, occurred: list[events.Occurred]) -> None:
        """Count a committed transaction's events (an events subscriber)."""
        facts = sent_facts({e.message_id for e in occurred})
        for e in occurred:
            sent = facts.get(e.message_id)
            stream = sent.stream if sent else ""
            if e.type == events.ACCEPTED:
                self.accepted.labels(stream).inc()
                continue
            domain = e.recipient.rpartition("@")[2].lower()
            mx = e.details.get("mx", "")
            provider = sp.match_group(self._provider_groups(), domain, [mx] if mx else []).name
            self.deliveries.labels(e.type, stream, provider).inc()
            if e.type == events.DELIVERED and sent is not None and not e.details.get("later"):
                self.latency.labels(stream).observe(max((e.at - sent.received_at).total_seconds(), 0.0))

    def _provider_groups(self) -> list[sp.Group]:
        read_at, found = self._groups
        if time.monotonic() - read_at > GROUPS_MAX_AGE:
            rows = list(ProviderGroup.select().order_by(ProviderGroup.position, ProviderGroup.id))
            found = [groups.as_group(row) for row in rows] or list(sp.DEFAULT_GROUPS)
            self._groups = (time.monotonic(), found)
        return found

    def exposition(self) -> tuple[bytes, str]:
        """The text format a scrape gets, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _QueueCollector:
    """The queue as it is at the scrape: read from the database, so the same on every node."""

    def collect(self) -> Iterable[GaugeMetricFamily]:
        depth = GaugeMetricFamily(
            "appliance_queue_depth", "Deliveries waiting to go out, by status.", labels=["status"]
        )
        waiting = stats.queue_depth()
        for status in stats.WAITING:
            depth.add_metric([status], waiting.get(status, 0))
        yield depth
        oldest = oldest_waiting()
        age = (clock.now() - oldest).total_seconds() if oldest else 0.0
        yield GaugeMetricFamily(
            "appliance_queue_oldest_age_seconds",
            "Age of the oldest message still waiting "
            "to be delivered (queued or deferred; held mail apart), 0 when none waits.",
            value=max(age, 0.0),
        )


def oldest_waiting() -> dt.datetime | None:
    """When the oldest message still waiting for delivery (queued or deferred, not held) came in."""
    found = [
        Message.select(Message.received_at)
        .where((Message.status == status) & (Message.direction == "outbound"))
        .order_by(Message.received_at)
        .limit(1)
        .scalar()
        for status in (QUEUED, DEFERRED)
    ]
    found = [when for when in found if when is not None]
    return min(found) if found else None


_current: Metrics | None = None


def connect() -> Metrics:
    """Start this process's metrics afresh and count committed events into them (create_app calls it)."""
    global _current
    _current = Metrics()
    events.subscribe((events.ACCEPTED, *OUTCOMES), _current.count)
    return _current


def current() -> Metrics | None:
    return _current


def session_opened(mx: bool) -> None:
    """An SMTP connection was accepted (the SMTP server calls it)."""
    if _current is not None:
        _current.sessions.labels("mx" if mx else "submission").inc()
        _current.sessions_open.inc()


def session_closed() -> None:
    if _current is not None:
        _current.sessions_open.dec()


def auth_failed(reason: str) -> None:
    """An AUTH attempt failed: ``reason`` is accounts' failure (``wrong password``, …) or ``throttled``."""
    if _current is not None:
        _current.auth_failures.labels(reason.replace(" ", "_").lower()).inc()


def allowed(remote_addr: str, forwarded: bool, authorization: str, token: str) -> bool:
    """Whether a scrape may read the metrics: from a loopback address, or with ``Authorization: Bearer
    METRICS_TOKEN`` when a token is set. A request a proxy forwarded never counts as loopback (a proxy
    on the same host connects from loopback on behalf of anyone)."""
    scheme, _, given = authorization.partition(" ")
    if token and scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
        return True
    if forwarded:
        return False
    try:
        address = ipaddress.ip_address(remote_addr.split("%")[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 on a dual-stack socket
    return (mapped or address).is_loopback


FORWARDED_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP")


def refusal(token_set: bool) -> tuple[int, dict, dict]:
    """The RFC 9457 problem a refused scrape gets: status, body, headers."""
    if token_set:
        return (
            401,
            {
                "type": "about:blank",
                "title": "Unauthorized",
                "status": 401,
                "detail": "/metrics needs Authorization: Bearer METRICS_TOKEN from an address other than loopback",
            },
            {"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    return (
        403,
        {
            "type": "about:blank",
            "title": "Forbidden",
            "status": 403,
            "detail": "/metrics is served to loopback only; set METRICS_TOKEN to scrape it from elsewhere",
        },
        {},
    )


def scrape(settings: dict, remote_addr: str, headers) -> tuple[int, bytes, dict]:
    """Answer a request for /metrics: status, body and headers (the dashboard's view and the
    METRICS_LISTEN server of a process without a dashboard both call it)."""
    forwarded = any(headers.get(name) for name in FORWARDED_HEADERS)
    if _current is None or not allowed(
        remote_addr, forwarded, headers.get("Authorization", ""), settings["METRICS_TOKEN"]
    ):
        status, problem, extra = refusal(bool(settings["METRICS_TOKEN"]))
        return status, json.dumps(problem).encode(), {"Content-Type": "application/problem+json", **extra}
    body, content_type = _current.exposition()
    return 200, body, {"Content-Type": content_type, "Cache-Control": "no-store"}


def wsgi_app(settings: dict):
    """A WSGI app serving only /metrics (METRICS_LISTEN, for a process that runs no dashboard)."""
    from http import HTTPStatus

    from werkzeug.datastructures import EnvironHeaders

    from . import db

    def app(environ, start_response):
        if environ.get("PATH_INFO") != "/metrics":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"only /metrics here\n"]
        with db.database.connection_context():
            status, body, extra = scrape(settings, environ.get("REMOTE_ADDR", ""), EnvironHeaders(environ))
        start_response(f"{status} {HTTPStatus(status).phrase}", list(extra.items()))
        return [body]

    return app

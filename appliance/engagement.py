"""What recipients do with delivered mail: opens, clicks and unsubscribes, as events; machine opens and
clicks (mail privacy proxies, link scanners) are marked ``machine``.

The tracking endpoints of the web server and the unsubscribe address on port 25 call these with
the token of a link (appliance/tracking.py). A token that does not verify records nothing (and its
request gets 404); nor does one whose delivery is gone. Opens and clicks are recorded by the
writer after the answer (``record_seen``). An opener's or clicker's IP address is kept truncated (IPv4 to its /24,
IPv6 to its /48): enough to tell a provider's proxy network apart, not to find a person.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import logging
from typing import NamedTuple

from . import clock, db, events, suppressions, tracking
from .models import Delivery, Event, Message
from .policy import acceptance

log = logging.getLogger(__name__)

MAX_AGENT = 200  # characters of a User-Agent kept

# Machine opens and clicks: recorded, marked ``machine``, kept out of the human rates.
# Apple Mail Privacy Protection fetches every image of a message through Apple's own network
# (17.0.0.0/8 is Apple's) as soon as the device receives it; a security scanner follows every
# link of a message within a moment, under an agent that says what it is or none at all.
PROXY_NETWORKS = tuple(ipaddress.ip_network(n) for n in ("17.0.0.0/8",))
PROXY_OPEN_SECONDS = 120  # an open from a proxy network this soon after delivery is the proxy's
SCANNER_WORDS = (
    "bot",
    "spider",
    "crawler",
    "scanner",
    "preview",
    "python",
    "curl",
    "wget",
    "go-http-client",
    "barracuda",
    "mimecast",
    "proofpoint",
    "safelinks",
)
ALL_LINKS_SECONDS = 1.0  # different links of one copy clicked within this: a scanner following them all


class Recipient(NamedTuple):
    """The delivery a token names."""

    message_id: str
    address: str
    from_domain: str  # what an unsubscribe is scoped to


def truncated_ip(ip: str) -> str:
    """The network of ``ip`` that is kept: its /24 (IPv4) or /48 (IPv6); "" when it is no address."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ""
    if address.version == 6 and address.ipv4_mapped:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def recipient(settings: dict, kind: str, token: str) -> Recipient | None:
    """The delivery a token of ``kind`` names (an unsubscribe link's), or None."""
    tracking_id = tracking.verify(settings, kind, token)
    if tracking_id is None:
        return None
    row = (
        Delivery.select(Delivery.message, Delivery.rcpt, Message.from_header)
        .join(Message)
        .where(Delivery.tracking_id == tracking_id)
        .tuples()
        .first()
    )
    if row is None:
        return None
    message_id, address, from_header = row
    senders = [a for a in acceptance.header_addresses(from_header) if "@" in a]
    domain = acceptance.split_address(senders[0])[1].lower() if senders else ""
    return Recipient(message_id, address, domain)


def scanner_agent(agent: str) -> bool:
    """A User-Agent that is a program's, not a mail reader's (or none at all)."""
    lowered = agent.lower()
    return not lowered.strip() or any(word in lowered for word in SCANNER_WORDS)


def proxy_network(ip: str) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    address = getattr(address, "ipv4_mapped", None) or address
    return any(address in network for network in PROXY_NETWORKS)


def machine_open(ip: str, agent: str, delivered_at: dt.datetime | None, at: dt.datetime) -> bool:
    """Tell a proxy's or a scanner's fetch of the pixel from a reader's."""
    soon = delivered_at is not None and (at - delivered_at).total_seconds() <= PROXY_OPEN_SECONDS
    return scanner_agent(agent) or (soon and proxy_network(ip))


class Seen(NamedTuple):
    """A fetch of an open pixel or a tracked link as the web server saw it, for the writer to record."""

    kind: str  # tracking.OPEN or tracking.CLICK
    tracking_id: str
    at: dt.datetime
    ip: str
    agent: str
    url: str = ""


def opened(settings: dict, token: str, ip: str, agent: str) -> bool:
    """Whether ``token`` is the open pixel of one of our copies; if so its open is handed to the writer."""
    return _seen(settings, tracking.OPEN, token, ip, agent)


def clicked(settings: dict, token: str, url: str, ip: str, agent: str) -> bool:
    """Whether ``token`` signs a link of one of our copies to ``url`` (so nobody can send a click through
    us to a URL that was not in the message); if so its click is handed to the writer."""
    return _seen(settings, tracking.CLICK, token, ip, agent, url)


def _seen(settings: dict, kind: str, token: str, ip: str, agent: str, url: str = "") -> bool:
    """The signature is the proof: nothing is read here, and the answer does not wait for the commit.
    An open or a click is no promise made to anyone (unlike the 250 of accepted mail): one that a
    crash loses before the writer's next commit is lost, and the reader's request never waits on
    the disk."""
    tracking_id = tracking.verify(settings, kind, token, url)
    if tracking_id is None:
        return False
    db.write_many(record_seen, Seen(kind, tracking_id, clock.now(), ip, agent, url))
    return True


def record_seen(seen: list[Seen]) -> list[bool]:
    """The writer's job kind for opens and clicks: the ``opened`` and ``clicked`` events of the
    deliveries the tracking ids name (one read for them all), machine ones marked; False for a
    tracking id whose delivery is gone (its message deleted): nothing is recorded for it.
    A click on another link of the same copy within ALL_LINKS_SECONDS marks both as a machine's."""
    rows = (
        Delivery.select(Delivery.tracking_id, Delivery.message, Delivery.rcpt, Delivery.delivered_at)
        .where(Delivery.tracking_id.in_(sorted({s.tracking_id for s in seen})))
        .tuples()
    )
    deliveries = {tracking_id: (message_id, rcpt, delivered_at) for tracking_id, message_id, rcpt, delivered_at in rows}
    opens: list[events.Occurred] = []
    results = []
    for each in seen:
        found = deliveries.get(each.tracking_id)
        results.append(found is not None)
        if found is None:
            continue
        message_id, address, delivered_at = found
        details = {"ip": truncated_ip(each.ip), "agent": each.agent[:MAX_AGENT]}
        if each.kind == tracking.OPEN:
            machine = machine_open(each.ip, each.agent, delivered_at, each.at)
            opens.append(events.Occurred(message_id, events.OPENED, address, each.at, {**details, "machine": machine}))
        else:  # recorded one by one: the next click of the batch sees this one
            machine = _all_links_clicked(message_id, address, each.url, each.at) or scanner_agent(each.agent)
            events.record(
                [
                    events.Occurred(
                        message_id, events.CLICKED, address, each.at, {"url": each.url, **details, "machine": machine}
                    )
                ]
            )
    events.record(opens)
    return results


def _all_links_clicked(message_id: str, address: str, url: str, at: dt.datetime) -> bool:
    """Whether another link of the copy was clicked within ALL_LINKS_SECONDS before ``at``; those
    clicks are marked ``machine`` too."""
    since = at - dt.timedelta(seconds=ALL_LINKS_SECONDS)
    recent = list(
        Event.select().where(
            (Event.message == message_id)
            & (Event.recipient == address)
            & (Event.type == events.CLICKED)
            & (Event.at >= since)
        )
    )
    others = [e for e in recent if json.loads(e.details).get("url") != url]
    for event in others:
        earlier = json.loads(event.details)
        if not earlier.get("machine"):
            earlier["machine"] = True
            Event.update(details=json.dumps(earlier, separators=(",", ":"))).where(Event.id == event.id).execute()
    return bool(others)


def unsubscribe(settings: dict, token: str, via: str) -> Recipient | None:
    """Suppress the recipient of ``token`` for broadcast mail from its message's sending domain
    (source ``unsubscribe``) and record ``unsubscribed``; transactional mail still reaches it.
    ``via``: ``one-click`` (RFC 8058 POST), ``page`` (the button) or ``mailto``."""
    found = recipient(settings, tracking.UNSUBSCRIBE, token)
    if found is None:
        return None
    db.write(lambda: unsubscribe_now(found, via)).result()
    return found


def unsubscribe_now(found: Recipient, via: str) -> None:
    """``unsubscribe``'s writes, inside the caller's transaction (the mail to the unsubscribe address
    is stored in the same one)."""
    now = clock.now()
    suppressions.unsubscribe(
        found.address,
        found.from_domain,
        f"unsubscribed ({via}) from broadcast mail of {found.from_domain or 'this sender'}",
        now,
    )
    events.record([events.Occurred(found.message_id, events.UNSUBSCRIBED, found.address, now, {"via": via})])
    log.info("message %s: %s unsubscribed (%s)", found.message_id, found.address, via)


def storing_unsubscribes(found: list[Recipient], store):
    """A store function for mail to unsubscribe addresses: ``store`` (of its kind), then each
    unsubscribe, in the same transaction."""

    def store_and_unsubscribe(items):
        ids = store(items)
        for each in found:
            unsubscribe_now(each, "mailto")
        return ids

    return store_and_unsubscribe

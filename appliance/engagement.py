"""What recipients do with delivered mail: opens, clicks and unsubscribes, as events; machine opens and
clicks (mail privacy proxies, link scanners) are marked ``machine``.

The tracking endpoints of the web server and the unsubscribe address on port 25 call these with
the token of a link (appliance/tracking.py). A token that does not verify, or whose delivery is
gone, records nothing. An opener's or clicker's IP address is kept truncated (IPv4 to its /24,
IPv6 to its /48): enough to tell a provider's proxy network apart, not to find a person.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import logging
from typing import NamedTuple

from . import clock, db, events, tracking
from .models import Delivery, Event, Message, Suppression
from .policy import acceptance

log = logging.getLogger(__name__)

MAX_AGENT = 200  # characters of a User-Agent kept

# Machine opens and clicks: recorded, marked ``machine``, kept out of the human rates.
# Apple Mail Privacy Protection fetches every image of a message through Apple's own network
# (17.0.0.0/8 is Apple's) as soon as the device receives it; a security scanner follows every
# link of a message within a moment, under an agent that says what it is or none at all.
PROXY_NETWORKS = tuple(ipaddress.ip_network(n) for n in ("17.0.0.0/8",))
PROXY_OPEN_SECONDS = 120  # an open from a proxy network this soon after delivery is the proxy's
SCANNER_WORDS = ("bot", "spider", "crawler", "scanner", "preview", "python", "curl", "wget", "go-http-client",
                 "barracuda", "mimecast", "proofpoint", "safelinks")
ALL_LINKS_SECONDS = 1.0  # different links of one copy clicked within this: a scanner following them all


class Recipient(NamedTuple):
    """The delivery a token names."""

    message_id: str
    address: str
    from_domain: str  # what an unsubscribe is scoped to
    delivered_at: dt.datetime | None


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


def recipient(settings: dict, kind: str, token: str, url: str = "") -> Recipient | None:
    """The delivery a token of ``kind`` names (for a click: leading to ``url``), or None."""
    tracking_id = tracking.verify(settings, kind, token, url)
    if tracking_id is None:
        return None
    row = (Delivery.select(Delivery.message, Delivery.rcpt, Message.from_header, Delivery.delivered_at)
           .join(Message).where(Delivery.tracking_id == tracking_id).tuples().first())
    if row is None:
        return None
    message_id, address, from_header, delivered_at = row
    senders = [a for a in acceptance.header_addresses(from_header) if "@" in a]
    domain = acceptance.split_address(senders[0])[1].lower() if senders else ""
    return Recipient(message_id, address, domain, delivered_at)


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


def opened(settings: dict, token: str, ip: str, agent: str) -> bool:
    """Record that the open pixel of ``token`` was fetched; False when the token is not one of ours."""
    found = recipient(settings, tracking.OPEN, token)
    if found is None:
        return False
    now = clock.now()
    machine = machine_open(ip, agent, found.delivered_at, now)
    _record(found, events.OPENED, now, ip=truncated_ip(ip), agent=agent[:MAX_AGENT], machine=machine)
    return True


def clicked(settings: dict, token: str, url: str, ip: str, agent: str) -> bool:
    """Record that the link of ``token`` to ``url`` was followed; False when the token does not
    sign that URL (so nobody can send a click through us to a URL that was not in the message).
    A click on another link of the same copy within ALL_LINKS_SECONDS marks both as a machine's."""
    found = recipient(settings, tracking.CLICK, token, url)
    if found is None:
        return False
    now = clock.now()
    details = {"url": url, "ip": truncated_ip(ip), "agent": agent[:MAX_AGENT]}

    def write() -> None:
        since = now - dt.timedelta(seconds=ALL_LINKS_SECONDS)
        recent = list(Event.select().where(
            (Event.message == found.message_id) & (Event.recipient == found.address)
            & (Event.type == events.CLICKED) & (Event.at >= since)))
        others = [e for e in recent if json.loads(e.details).get("url") != url]
        machine = scanner_agent(agent) or bool(others)
        for event in others:
            earlier = json.loads(event.details)
            if not earlier.get("machine"):
                earlier["machine"] = True
                Event.update(details=json.dumps(earlier, separators=(",", ":"))).where(Event.id == event.id).execute()
        events.record([events.Occurred(found.message_id, events.CLICKED, found.address, now,
                                       {**details, "machine": machine})])

    db.write(write).result()
    return True


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
    Suppression.insert(
        address=found.address.lower(), stream="broadcast", domain=found.from_domain, source="unsubscribe",
        reason=f"unsubscribed ({via}) from broadcast mail of {found.from_domain or 'this sender'}", created_at=now,
    ).on_conflict_ignore().execute()
    events.record([events.Occurred(found.message_id, events.UNSUBSCRIBED, found.address, now, {"via": via})])
    log.info("message %s: %s unsubscribed (%s)", found.message_id, found.address, via)


def _record(found: Recipient, type_: str, at: dt.datetime, **details) -> None:
    occurred = events.Occurred(found.message_id, type_, found.address, at, details)
    db.write(lambda: events.record([occurred])).result()


def storing_unsubscribes(found: list[Recipient], store):
    """A store function for mail to unsubscribe addresses: ``store`` (of its kind), then each
    unsubscribe, in the same transaction."""

    def store_and_unsubscribe(items):
        ids = store(items)
        for each in found:
            unsubscribe_now(each, "mailto")
        return ids

    return store_and_unsubscribe
